"""bench/gpu_check.py's big_step_scaling section (run on a GPU for the paper-scale preset) also runs on
a CPU at a small preset: its parts are positive, the slow step count costs more, and the reported
speed-up is the ratio of the two measured step latencies."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_big_step_scaling_section_on_cpu(tmp_path):
    import gpu_check
    out = tmp_path / "gpu_check.json"
    res = gpu_check.main(["--sections", "big_step_scaling", "--device", "cpu", "--scaling-presets", "tiny",
                          "--big-reps", "2", "--fast-steps", "2", "--slow-steps", "8", "--out", str(out)])
    assert "error" not in res["big_step_scaling"], res["big_step_scaling"].get("error")
    doc = json.loads(out.read_text())["big_step_scaling"]
    assert doc["fast_steps"] == 2 and doc["slow_steps"] == 8 and doc["dtype"] == "torch.float32"
    r = doc["presets"]["tiny"]
    assert r["camera"] == [64, 64] and r["rounds"] == 2 and r["params_total"] > 1e6
    assert r["fixed_ms"] > 0 and r["per_step_ms"] > 0
    assert r["latency_ms"]["8"] > r["latency_ms"]["2"]
    assert abs(r["speedup"] - r["latency_ms"]["8"] / r["latency_ms"]["2"]) < 1e-9
    assert abs(r["fixed_over_step"] - r["fixed_ms"] / r["per_step_ms"]) < 1e-9
