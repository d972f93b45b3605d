"""bench/step_scaling.py splits a sampling control step into its fixed part and its per-sampler-step
part, per model, and the two parts account for the measured step at the few-step count."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_step_scaling_reports_fixed_and_per_step_parts(tmp_path, capsys):
    import step_scaling
    import torch
    threads = torch.get_num_threads()
    out = tmp_path / "scaling.json"
    assert step_scaling.main(["--presets", "tiny", "--artifact", os.path.join(ROOT, "artifacts", "tiny_button_press"),
                              "--slow-steps", "8", "--fast-steps", "2", "--rounds", "2", "--threads", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["model"] for r in doc["rows"]] == ["tiny (untrained)", os.path.join(ROOT, "artifacts", "tiny_button_press")]
    for r in doc["rows"]:
        assert r["fixed_ms"] > 0 and r["per_step_ms"] > 0 and r["image"] == [64, 64]
        # the parts are the engine's own stage timings: fixed + 2 steps is (nearly) the whole step
        assert abs(r["fixed_ms"] + 2 * r["per_step_ms"] - r["fast_ms"]) < 0.5 * r["fast_ms"]
        assert r["slow_ms"] > r["fast_ms"] and abs(r["speedup"] - r["slow_ms"] / r["fast_ms"]) < 1e-9
    assert torch.get_num_threads() == threads          # the bench gives torch's global pool back as found
    assert "8x is out of reach at 8 vs 2 steps (at most 4.0x)" in capsys.readouterr().out
    with __import__("pytest").raises(SystemExit):
        step_scaling.main(["--fast-steps", "4", "--slow-steps", "4"])
