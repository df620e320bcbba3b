"""`emergence gate` and `emergence history` end to end on small real checkpoints (the shipped n1m model).

The use cases of the README: a converted copy passes non-inferiority, a copy with damaged weights fails
naming the regressed skills, and the history of a training sequence flags the one step that regresses.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.cli.main import main
from harness.gate.policy import validate_policy
from harness.report.build import write_report
from harness.zoo.family import SHIPPED_DIR

N1M = SHIPPED_DIR / "default" / "n1m"
TASK = """name: gate-small
version: 1
kind: composite
skill_set: symbolic_v2
skills: all
ks: [1, 2]
modes: [chain]
items: {single_per_skill: 25, per_cell: 40}
scoring: [exact_match]
max_new_tokens: 24
"""
POLICY = """name: release
version: 1
tasks: [{task}]
stages:
  - {{name: basic, kind: basic, by: {by}, floor: 0.5, margin: 0.05}}
  - {{name: composite, kind: composite, by: [k], margin: 0.1}}
"""


def _copy(src: Path, dst: Path, transform=None) -> Path:
    """A checkpoint folder with src's own files (no step subfolders); weights passed through `transform`."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy2(f, dst / f.name)
    weights = load_file(str(src / "model.safetensors"))
    save_file(transform(weights) if transform else weights, str(dst / "model.safetensors"))
    return dst


def converted(w: dict) -> dict:
    """fp16 -> bf16 -> fp32: a lossy conversion, saved again."""
    return {k: v.to(torch.bfloat16).to(torch.float32).contiguous() for k, v in w.items()}


def damaged(w: dict) -> dict:
    """Zeroes the last block's MLP output and scrambles its attention output projection."""
    out = dict(w)
    mlp = "gpt_neox.layers.3.mlp.dense_4h_to_h.weight"
    out[mlp] = torch.zeros_like(w[mlp])
    g = torch.Generator().manual_seed(0)
    dense = w["gpt_neox.layers.3.attention.dense.weight"]
    out["gpt_neox.layers.3.attention.dense.weight"] = (torch.randn(dense.shape, generator=g) * 0.2).to(dense.dtype)
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    (root / "task.yaml").write_text(TASK)
    for by in ("all", "skill"):
        (root / f"policy_{by}.yaml").write_text(POLICY.format(task=root / "task.yaml", by=by))
    return {"root": root, "base": _copy(N1M, root / "base"), "conv": _copy(N1M, root / "conv", converted),
            "bad": _copy(N1M, root / "bad", damaged)}


def _gate(folders, candidate: str, by: str, capsys) -> tuple[int, str]:
    code = main(["gate", "--policy", str(folders["root"] / f"policy_{by}.yaml"), "--baseline", str(folders["base"]),
                 "--candidate", str(folders[candidate]), "--out", str(folders["root"] / "results"), "--device", "cpu"])
    return code, capsys.readouterr().out


def test_converted_copy_passes_noninferiority_and_writes_markdown_and_junit(folders, capsys):
    code, out = _gate(folders, "conv", "all", capsys)
    assert code == 0, out
    assert "stage basic: passed" in out and "stage composite: passed" in out
    xml = Path(out.split("junit: ")[1].strip())
    suites = ET.parse(xml).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["basic", "composite"] and all(s.get("failures") == "0" for s in suites)
    assert xml.with_suffix(".md").read_text().count("| passed |") >= 3


def test_damaged_weights_fail_naming_the_regressed_skills(folders, capsys):
    code, out = _gate(folders, "bad", "skill", capsys)
    assert code == 1, out
    assert "stage basic: failed" in out and "stage composite: not run" in out
    named = out.split("regressed: ")[1].splitlines()[0]
    assert "noninferiority skill=" in named
    xml = Path(out.split("junit: ")[1].strip())
    assert int(ET.parse(xml).getroot().find("testsuite").get("failures")) >= 1


def test_history_flags_the_one_step_of_a_training_sequence_that_regresses(folders, capsys, tmp_path):
    seq = tmp_path / "seq"
    _copy(N1M / "step03750", seq / "step03000")
    _copy(N1M, seq / "step04000")
    _copy(N1M, seq / "step05000", damaged)  # the regressing step
    _copy(N1M, seq / "step06000", converted)
    store = tmp_path / "results"
    assert main(["run", "--family", str(seq), "--tasks", str(folders["root"] / "task.yaml"), "--out", str(store),
                 "--no-analyze", "--device", "cpu"]) == 0
    run_dir = next(p for p in store.iterdir() if p.is_dir())
    capsys.readouterr()
    assert main(["history", "add", str(run_dir)]) == 0
    assert main(["history", "add", str(run_dir)]) == 0  # nothing is added twice
    assert "added 0 rows" in capsys.readouterr().out
    assert main(["history", "show", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    flagged = [line for line in out.splitlines() if "DOWN" in line]
    assert "4 checkpoints in the history" in out and flagged
    assert all("seq/step05000" in line for line in flagged), out
    html = write_report(run_dir).read_text()
    monitoring = html.split('id="history"')[1]
    assert "seq/step05000" in monitoring.split("</section>")[0] and "no monitoring history" not in monitoring


def test_policy_validation_reports_every_problem():
    problems = validate_policy({"name": "p", "version": 1, "alpha": 0.7, "stages": [
        {"name": "b", "kind": "basic", "by": "tuple"}, {"name": "c", "kind": "composite", "margin": 2.0, "ks": [1]},
        {"name": "x", "kind": "cross_entropy"}, {"name": "y", "kind": "weird"}]})
    text = "\n".join(problems)
    for bit in ("'alpha'", "'tuple'", "needs 'floor' and/or 'margin'", "'margin' must be in [0, 1]", "'ks'",
                "needs 'max_increase'", "'kind' must be one of"):
        assert bit in text, text


def test_bad_policy_or_unknown_label_exits_2(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p\nversion: 1\nstages: []\n")
    assert main(["gate", "--policy", str(bad), "--baseline", "a", "--candidate", "b"]) == 2
    assert "'stages' is empty" in capsys.readouterr().err


def test_cross_entropy_check_compares_nats_per_token_relative_to_the_baseline():
    import pandas as pd

    from harness.gate.decide import FAILED, PASSED, UNDECIDED, decide_cross_entropy
    from harness.gate.policy import Stage

    stage = Stage("ce", "cross_entropy", (), max_increase=0.02)
    base = pd.Series({"ce_nats_sum": 100.0, "ce_tokens": 100})
    assert decide_cross_entropy(stage, base, pd.Series({"ce_nats_sum": 101.5, "ce_tokens": 100}))[0].verdict == PASSED
    assert decide_cross_entropy(stage, base, pd.Series({"ce_nats_sum": 103.0, "ce_tokens": 100}))[0].verdict == FAILED
    missing = pd.Series({"ce_nats_sum": float("nan"), "ce_tokens": 0})
    assert decide_cross_entropy(stage, base, missing)[0].verdict == UNDECIDED


def test_labels_in_an_existing_run_give_the_same_decision_as_the_folders(folders, capsys):
    code, out = _gate(folders, "bad", "skill", capsys)
    run_dir = Path(out.split("junit: ")[1].strip()).parent.parent
    again = main(["gate", "--policy", str(folders["root"] / "policy_skill.yaml"), "--run", str(run_dir),
                  "--baseline", "base", "--candidate", "bad"])
    out_again = capsys.readouterr().out
    assert again == code == 1
    assert out_again.split("regressed: ")[1].splitlines()[0] == out.split("regressed: ")[1].splitlines()[0]


def test_cross_entropy_check_compares_bits_per_byte_when_tokenizers_differ():
    import pandas as pd

    from harness.gate.decide import PASSED, decide_cross_entropy
    from harness.gate.policy import Stage

    stage = Stage("ce", "cross_entropy", (), max_increase=0.02)
    base = pd.Series({"ce_nats_sum": 100.0, "ce_tokens": 100, "ce_bytes": 400, "tokenizer_hash": "a"})
    # twice the nats per token with a tokenizer of half as many tokens: the same bits per byte
    other = pd.Series({"ce_nats_sum": 100.0, "ce_tokens": 50, "ce_bytes": 400, "tokenizer_hash": "b"})
    result = decide_cross_entropy(stage, base, other)[0]
    assert result.verdict == PASSED and "bits/byte" in result.note
