"""bench/onnx_norms.py: the tiny checkpoint exported with both RMS-norm forms, their optimised node
counts, and both onnx engines on one stream with the same actions."""
import json
import os
import sys

import pytest

pytestmark = pytest.mark.slow          # two exports of the tiny checkpoint (about a minute)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_onnx_norms_compares_the_two_exported_forms(tmp_path, capsys):
    import onnx_norms
    out = tmp_path / "norms.json"
    assert onnx_norms.main(["--presets", "tiny", "--threads", "1", "--rounds", "1", "--steps", "3", "--warmup", "1",
                            "--sampler-steps", "2", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    torch_form, fusable = doc["optimized_nodes"]["tiny/torch"], doc["optimized_nodes"]["tiny/fusable"]
    for graph in ("context_step", "denoise_step"):
        assert 0 < fusable[graph] < torch_form[graph]                 # the norms fused: fewer nodes
    (ratio,) = doc["summary"]["tiny/1"]["speedup_p50"]
    assert ratio > 0 and doc["summary"]["tiny/1"]["max_action_diff"] < 1e-4
    for form in ("torch", "fusable"):
        (row,) = doc["rows"][f"tiny/1/{form}"]
        assert row["total"] > 0 and row["total_p99"] >= row["total"] and row["sampler"] > 0
    for form in ("torch", "fusable"):                                 # exported once, then reused
        with open(tmp_path / "cache" / f"tiny-norms-{form}" / "manifest.json") as f:
            assert json.load(f)["rms_norms"] == form
    assert "speed-up (p50)" in capsys.readouterr().out
