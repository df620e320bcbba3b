"""Property-based fuzzing of task files, run by test_task_file_bounds.py in a child process whose address
space is capped (RLIMIT_AS): any task file gives exit 0 or 2, problems on single lines, bounded output,
and `tasks validate` accepts only what `run` will accept. Exit status 0 when every property held.

Usage: python fuzz_task_files.py FOLDER MAX_EXAMPLES
"""
from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import replace
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli.main import main
from harness.run.task_files import CompositeTask, load_task
from skill_catalog.compose import compose_items

MAX_OUTPUT = 20_000
KEYS = ["name", "version", "kind", "skill_set", "skills", "ks", "modes", "items", "shots", "choices", "scoring",
        "seed", "split_seed", "template_version", "max_new_tokens", "description", "source", "pieces"]
WORDS = ["composite", "cross_entropy", "symbolic", "natural", "all", "chain", "conjunction", "direct", "single",
         "exact_match", "multiple_choice", "gold_logprob", "partial_credit", "v1", "catalog", "reverse", "upper"]
scalars = (st.none() | st.booleans() | st.integers(-5, 40) | st.integers(-10**40, 10**40) | st.floats()
           | st.text(max_size=30) | st.sampled_from(WORDS))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
    st.sampled_from(["per_cell", "single_per_skill", "x"]) | st.text(max_size=8), inner, max_size=3), max_leaves=25)
plausible = {"kind": st.sampled_from(["composite", "cross_entropy"]), "skill_set": st.sampled_from(["symbolic", "natural"]),
             "ks": st.lists(st.integers(0, 12), max_size=5), "shots": st.integers(0, 100_000),
             "items": st.fixed_dictionaries({}, optional={"per_cell": st.integers(0, 3), "single_per_skill": st.integers(0, 2)}),
             "modes": st.lists(st.sampled_from(["chain", "conjunction", "direct", "single", "x"]), max_size=3),
             "version": st.integers(0, 3), "name": st.text(max_size=12), "choices": st.integers(0, 30),
             "max_new_tokens": st.integers(0, 5000), "skills": st.lists(st.sampled_from(WORDS), max_size=4)}
documents = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6),
                            st.one_of(values, *[plausible[k] for k in plausible]), max_size=12)


BASES = ({"name": "f", "version": 1, "kind": "composite", "skill_set": "symbolic", "ks": [1, 2],
          "modes": ["chain"], "items": {"per_cell": 1, "single_per_skill": 1}},
         {"name": "f", "version": 1, "kind": "cross_entropy", "source": "catalog", "pieces": 5})


@st.composite
def task_texts(draw) -> bytes:
    kind = draw(st.sampled_from(["valid-mutated"] * 4 + ["document", "document", "raw", "bomb", "deep"]))
    if kind == "valid-mutated":  # a valid task with a few keys changed or removed: reaches the deeper checks
        doc = dict(draw(st.sampled_from(BASES)))
        for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
            if draw(st.integers(0, 4)) == 0:
                doc.pop(key, None)
            else:
                doc[key] = draw(plausible.get(key, values) if draw(st.booleans()) else values)
        return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8")
    if kind == "document":
        doc = draw(documents)
        for key, strategy in plausible.items():
            if key in doc and draw(st.booleans()):
                doc[key] = draw(strategy)
        return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8")
    if kind == "raw":
        return draw(st.binary(max_size=400))
    if kind == "bomb":  # aliases nested `depth` levels, `width` wide, inside a key that is validated
        depth, width = draw(st.integers(2, 9)), draw(st.integers(2, 10))
        key = draw(st.sampled_from(["skills", "modes", "ks", "scoring", "items", "x"]))
        lines = ['l0: &l0 ["a", "b"]'] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
        text = "\n".join(["name: bomb", "version: 1", "kind: composite", "skill_set: symbolic", *lines,
                          f"{key}: *l{depth - 1}"])
        return text.encode()
    depth = draw(st.integers(10, 5000))
    return ("name: deep\nversion: 1\nkind: composite\nskills: " + "[" * depth + "]" * depth).encode()


def _call(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def check(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    code, out, err = _call(["tasks", "validate", str(path)])
    assert code in (0, 2), (code, out, err)
    assert err == "" and len(out) < MAX_OUTPUT, (out[:500], err[:500])
    assert all(line.startswith((str(path), "  - ")) for line in out.splitlines()), out[:500]
    code_items, _, err_items = _call(["items", "--task", str(path), "--show", "1"])
    if code == 2:  # refused by validate: refused by every command, in one line
        assert code_items == 2 and len(err_items.strip().splitlines()) == 1 and err_items.startswith("error: "), err_items
        return
    task = load_task(path)  # accepted by validate: `run` builds it and composes its items without refusal
    if isinstance(task, CompositeTask):
        spec = task.composition
        spec = replace(spec, items_per_cell=min(spec.items_per_cell, 2),
                       single_items_per_skill=min(spec.single_items_per_skill, 1))
        for _ in compose_items(spec):
            pass
    elif code_items != 0:
        assert code_items == 2 and len(err_items.strip().splitlines()) == 1, err_items


def run(folder: Path, max_examples: int) -> None:
    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(task_texts())
    def prop(content: bytes) -> None:
        check(folder / "task.yaml", content)

    prop()


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]))
