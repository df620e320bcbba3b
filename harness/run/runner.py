"""The runner: a loop, not a framework — load a checkpoint, build requests, score, write its part.

Each finished checkpoint's rows are renamed into ``parts/`` in one step, and every request result
goes through the shared cache, so a run killed at any moment resumes where it stopped and ends
with the same records. A failing checkpoint is recorded (NaN plus its reason) and the loop goes on.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from harness.storage.result_cache import ResultCache, default_cache_dir
from harness.model.cached_model import CachedModel
from harness.model.chat_prompts import WITHOUT_TEMPLATE_NOTE, ChatPrompts, chat_renderer, has_chat_template
from harness.checkpoints.discovery import find_duplicate_weights
from harness.run.cross_entropy import measure_cross_entropy
from harness.checkpoints.family import Member, Unresolved, resolve_family
from harness.model.hf_load import check_dtype, resolve_device
from harness.model.hf_model import BOS_POLICIES, HFModel, ModelSettings
from harness.offline import enforce_offline
from harness.parallel import World, gather_rows, world
from harness.records import CheckpointRow, Record, records_frame
from harness.run.config import RunConfig, run_id
from harness.run.manifest import write_manifest
from harness.run.item_metrics import score_items
from harness.storage.run_files import combine, part_path, remove_orphans, write_json, write_table
from harness.run.task_files import CompositeTask, CrossEntropyTask, Task, load_task, task_hash
from harness.checkpoints.weight_files import tokenizer_hash
from skill_catalog.compose import Item, compose_items
from skill_catalog.errors import UserError

CHUNK_ITEMS = 256
"""Items scored per call; each call's results reach the cache, so a kill loses at most one chunk."""


@dataclass(frozen=True)
class Plan:
    """What a run will do, resolved from its configuration."""

    config: RunConfig
    """The configuration."""
    members: tuple[Member, ...]
    """Checkpoints of this shard."""
    unresolved: tuple[Unresolved, ...]
    """Checkpoints named but not found or unreadable."""
    tasks: tuple[Task, ...]
    """Loaded task suites."""
    items: dict[str, tuple[Item, ...]]
    """Items of each composite task, by task name."""
    run_dir: Path
    """Output folder of the run."""


def _limited(items: list[Item], limit: int | None) -> tuple[Item, ...]:
    """At most `limit` items of each (k, mode, split) cell, so a smoke run still spans every k."""
    if limit is None:
        return tuple(items)
    kept, counts = [], {}
    for item in items:
        cell = (item.k, item.mode, item.split)
        if counts.get(cell, 0) < limit:
            counts[cell] = counts.get(cell, 0) + 1
            kept.append(item)
    return tuple(kept)


def _with_default_corpora(tasks: list[Task]) -> tuple[Task, ...]:
    """The tasks plus the cross-entropy suite each composite suite carries (after the named ones, so a
    corpus the user names stays the checkpoint's primary loss), each suite once."""
    for task in list(tasks):
        if isinstance(task, CompositeTask) and task.cross_entropy:
            default = load_task(task.cross_entropy)
            if all(t.name != default.name for t in tasks):
                tasks.append(default)
    return tuple(tasks)


def _default_family() -> tuple[str, ...]:
    from harness.zoo.family import family_path

    return (str(family_path("default")),)


def check_settings(config: RunConfig) -> None:
    """Refuses bad flags before anything is resolved, loaded or written.

    Raises:
        UserError: a bad --limit, --batch-size, --device, --dtype, --shard or --out.
    """
    if config.limit is not None and config.limit < 1:
        raise UserError(f"--limit {config.limit} must be >= 1")
    if config.bos not in BOS_POLICIES:
        raise UserError(f"--bos {config.bos!r} must be one of {', '.join(BOS_POLICIES)}")
    _batch(config.batch_size)
    check_dtype(config.dtype, resolve_device(config.device))
    config.shard_index()
    _check_out(Path(config.out))


def _check_out(out: Path) -> None:
    """`out` must be a folder this process can create files in (or a folder it can create)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; fix: pass a folder")
    existing = next(p for p in (out, *out.resolve().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file; fix: pass a folder")
    if not os.access(existing, os.W_OK | os.X_OK):  # EROFS and a read-only mode (root may write regardless)
        raise UserError(f"--out {out}: {existing} is not writable; fix: pass a folder you can write to")


def plan_run(config: RunConfig) -> Plan:
    """Resolves checkpoints and tasks, composes items and names the run directory."""
    check_settings(config)
    config = config if config.family else replace(config, family=_default_family())
    tasks = _with_default_corpora([load_task(t) for t in config.tasks])
    items = {t.name: _limited(list(compose_items(t.composition)), config.limit)
             for t in tasks if isinstance(t, CompositeTask)}
    members, unresolved = resolve_family(config.family, config.allow_pickle, _hash_cache(config))
    i, n = config.shard_index()
    members = members[i - 1::n]
    ids = [m.checkpoint.checkpoint_id for m in members] + [u.label for u in unresolved]
    rid = run_id(config, ids, [task_hash(t) for t in tasks])
    return Plan(config, members, unresolved, tasks, items, Path(config.out) / rid)


def _cache_root(config: RunConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else default_cache_dir()


def _hash_cache(config: RunConfig) -> Path:
    return _cache_root(config) / "weight-hashes.json"


def _checkpoint_row(member: Member) -> CheckpointRow:
    c = member.checkpoint
    return CheckpointRow(checkpoint_id=c.checkpoint_id, label=c.label, size=member.size, path=str(c.path),
                         architecture=c.architecture, fmt=c.fmt, dtype=c.dtype, params=_number(c.params),
                         params_nonembedding=_number(c.params_nonembedding), step=_number(c.step),
                         tokens_seen=_number(c.tokens_seen))


def _number(value: float | None) -> float:
    return value if value is not None else math.nan


def _score_member(plan: Plan, member: Member, cache: ResultCache, w: World) -> None:
    """Scores one checkpoint on every task and writes its parts (records, then the checkpoint row)."""
    started, config = time.perf_counter(), plan.config
    shortcuts = not config.plain_scoring
    settings = ModelSettings(device=config.device, dtype=config.dtype, batch_size=_batch(config.batch_size),
                             allow_pickle=config.allow_pickle, prefix_reuse=shortcuts, tree_packing=shortcuts,
                             max_length=config.max_length, device_map=config.device_map, bos=config.bos,
                             offload_folder=str(_cache_root(config) / "offload") if config.device_map else None)
    hf = HFModel.from_checkpoint(member.checkpoint, settings)
    identity = (member.checkpoint.checkpoint_id, tokenizer_hash(member.checkpoint.tokenizer_path), config.dtype)
    cached = CachedModel(hf, cache, identity,
                         {"max_length": hf.max_length_, "window": hf.window_length_, "bos": hf.bos_})
    model = ChatPrompts(cached, chat_renderer(hf.tokenizer, hf.name)) if config.chat_template else cached
    row = replace(_checkpoint_row(member), **_model_row(hf, identity[1], config), bos=hf.bos_, bos_rule=hf.bos_rule_,
                  ce_window=hf.window_length_)
    texts: list[dict] = []
    rows: list[Record] = []
    if row.note and w.is_main:
        tqdm.write(f"note: {row.label}: {row.note}")
    n_items = sum(len(plan.items.get(t.name, ())[w.rank::w.size]) for t in plan.tasks)
    bar = tqdm(total=n_items, desc=row.label, unit="item", leave=False, disable=not w.is_main)
    hf.progress = _phase_bar(row.label, w.is_main)
    for task in plan.tasks:
        if isinstance(task, CrossEntropyTask):
            if w.is_main:
                texts.append({"checkpoint_id": row.checkpoint_id, **measure_cross_entropy(model, task)})
            continue
        mine = plan.items[task.name][w.rank::w.size]
        for start in range(0, len(mine), CHUNK_ITEMS):
            chunk = score_items(model, mine[start:start + CHUNK_ITEMS], task.scoring, task.max_new_tokens)
            rows += [replace(r, checkpoint_id=row.checkpoint_id, checkpoint_label=row.label, task=task.name)
                     for r in chunk]
            bar.update(len(mine[start:start + CHUNK_ITEMS]))
    bar.close()
    hf.progress(None, 0, 0)
    rows = gather_rows(rows, w)
    if not w.is_main:
        return
    drift = _drift(hf, plan) if config.check_drift and rows else math.nan
    row = replace(row, **_primary_ce(texts), drift=drift, seconds=time.perf_counter() - started,
                  cache_hits=cached.hits_, cache_misses=cached.misses_, prefix_reuse_off=hf.reuse_disabled_reason_,
                  tree_packing_off=hf.packing_disabled_reason_, chunked_logits_off=hf.head_disabled_reason_,
                  generation_near_ties=hf.near_ties_)
    write_table(part_path(plan.run_dir, "records", row.checkpoint_id), _ordered(rows))
    write_json(part_path(plan.run_dir, "checkpoint", row.checkpoint_id),
               {"checkpoint": row.row(), "cross_entropy": texts})
    part_path(plan.run_dir, "failure", row.checkpoint_id).unlink(missing_ok=True)


def _model_row(hf: HFModel, tokenizer_id: str, config: RunConfig) -> dict:
    """How the checkpoint was run: the dtype its weights were loaded (de-quantized) to, its context, its prompts."""
    instruct = has_chat_template(hf.tokenizer)
    return {"tokenizer_hash": tokenizer_id, "compute_dtype": hf.compute_dtype_, "max_length": hf.max_length_,
            "device_map": config.device_map, "chat_template": config.chat_template,
            "note": WITHOUT_TEMPLATE_NOTE if instruct and not config.chat_template else None}


def _phase_bar(label: str, enabled: bool):
    """A progress callback for `HFModel`: one bar of requests that advances per batch and names its phase
    (cross-entropy, likelihood, generation); ``progress(None, 0, 0)`` closes it."""
    bar = tqdm(total=0, desc=label, unit="req", leave=False, disable=not enabled, position=1)
    state = {"phase": None}

    def progress(phase: str | None, done: int, total: int) -> None:
        if phase is None:
            bar.close()
            return
        if phase != state["phase"] or total != bar.total or done < bar.n:
            state["phase"] = phase
            bar.reset(total=total)
            bar.set_description(f"{label}: {phase}", refresh=False)
        bar.update(done - bar.n)

    return progress


def _ordered(rows: list[Record]):
    frame = records_frame(rows)
    return frame.sort_values(["task", "item_id", "metric"], kind="stable").reset_index(drop=True) if len(frame) else frame


def _primary_ce(texts: list[dict]) -> dict:
    """The first cross-entropy text's sums become the checkpoint's cross-entropy columns (none: the defaults)."""
    if not texts:
        return {}
    t = texts[0]
    return {"ce_task": t["task"], "ce_nats_sum": t["nats_sum"], "ce_tokens": t["n_tokens"], "ce_bytes": t["n_bytes"],
            "entropy_floor": t["entropy_floor"], "ce_error": t["error"]}


def _drift(hf: HFModel, plan: Plan) -> float:
    from harness.run.item_metrics import gold_request

    items = [i for task_items in plan.items.values() for i in task_items]
    requests = [gold_request(i) for i in items]
    return hf.drift(requests, sample_size=32) if requests else math.nan


def _batch(value: str) -> int | str:
    if value == "auto":
        return "auto"
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"--batch-size {value!r} must be a positive integer or 'auto'")
    return int(value)


def _record_failure(plan: Plan, label: str, checkpoint_id: str, error: str, member: Member | None) -> None:
    """Writes a failed checkpoint's row: every column of a scored one, NaN where nothing was measured."""
    row = _checkpoint_row(member) if member else CheckpointRow(checkpoint_id, label, size=label.split("/")[0])
    write_json(part_path(plan.run_dir, "failure", checkpoint_id),
               {"checkpoint": replace(row, error=error).row(), "cross_entropy": []})


def execute(plan: Plan) -> list[str]:
    """Scores every checkpoint of the plan not already finished; returns the failure lines."""
    cache, w = ResultCache(_cache_root(plan.config) / "results.sqlite"), world()
    failures = []
    for u in plan.unresolved:
        if plan.config.fail_fast:
            raise UserError(f"{u.label}: {u.error}")
        failures.append(f"{u.label}: {u.error}")
        if w.is_main:
            _record_failure(plan, u.label, "unresolved-" + u.label.replace("/", "_"), u.error, None)
    todo = [m for m in plan.members if not part_path(plan.run_dir, "checkpoint", m.checkpoint.checkpoint_id).exists()]
    for member in tqdm(todo, desc="checkpoints", unit="ckpt", disable=not w.is_main):
        try:
            _score_member(plan, member, cache, w)
        except UserError as err:
            failures.append(f"{member.checkpoint.label}: {err.one_line()}")
            if w.is_main:
                _record_failure(plan, member.checkpoint.label, member.checkpoint.checkpoint_id, err.one_line(), member)
            if plan.config.fail_fast:
                raise
    return failures


def run(config: RunConfig) -> tuple[Path, list[str]]:
    """Plans, scores and stores a run; returns its directory and the failure lines."""
    enforce_offline()
    hf_logging.disable_progress_bar()  # a bar per weight load would drown the run's own progress
    started = time.time()
    plan = plan_run(config)
    w = world()
    fresh = not plan.run_dir.exists()
    if w.is_main:
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        for folder in (plan.run_dir, plan.run_dir / "parts"):
            remove_orphans(folder)
        for group in find_duplicate_weights([m.checkpoint for m in plan.members]):
            print(f"warning: identical checkpoints (weights, config, tokenizer) under different labels: "
                  f"{', '.join(group)}")
    try:
        failures = execute(plan)
    except BaseException:
        if w.is_main and fresh:
            _remove_if_empty(plan.run_dir)
        raise
    if w.is_main:
        tables = combine(plan.run_dir)
        write_manifest(plan, tables, started, failures)
    return plan.run_dir, failures


def _remove_if_empty(run_dir: Path) -> None:
    """Removes a run folder this run created when it stopped before writing any part (e.g. --fail-fast)."""
    for folder in (run_dir / "parts", run_dir):
        try:
            folder.rmdir()  # only succeeds when empty
        except FileNotFoundError:
            continue
        except OSError:
            return
