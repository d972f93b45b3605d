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
