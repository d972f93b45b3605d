"""bench/future_psnr.py: the imagined-next-frame figure of the committed artifact, as quoted in
docs/results/curriculum.md, "tiny.yaml switched" (23.16 dB on the 10 held-out button-press scenes,
4 sampler steps)."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_the_committed_artifacts_imagined_frame_is_the_quoted_figure(tmp_path):
    import future_psnr
    art = os.path.join(ROOT, "artifacts", "tiny_button_press")
    out = future_psnr.main([art, "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "fp.json")])
    assert abs(out[art] - 23.16) < 0.01, out
    assert json.load(open(tmp_path / "fp.json")) == out


def test_several_tasks_give_each_tasks_figure_and_their_mean(tmp_path):
    """--tasks A B: per artifact {A: dB, B: dB, mean: dB}, each task's figure the one a single-task run gives."""
    import future_psnr
    art = os.path.join(ROOT, "artifacts", "tiny_button_press")
    common = ["--episodes", "1", "--data-root", str(tmp_path / "data")]
    both = future_psnr.main([art, "--tasks", "button-press-topdown-v3", "reach-v3", *common])[art]
    assert set(both) == {"button-press-topdown-v3", "reach-v3", "mean"}
    assert abs(both["mean"] - (both["button-press-topdown-v3"] + both["reach-v3"]) / 2) < 1e-9
    one = future_psnr.main([art, "--task", "reach-v3", *common])[art]
    assert abs(one - both["reach-v3"]) < 1e-6 and 10 < one < 40
