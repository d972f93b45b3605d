"""kairos train-vae: writes weights (safetensors), a report and a figure; and, in a shorter run than
the README's, learns to reconstruct held-out clips well above their mean frame."""
import json
import math

import pytest
from safetensors.torch import load_file

from training.train_vae import main


def test_train_vae_writes_weights_report_and_figure(tmp_path):
    r = main(["--steps", "2", "--batch", "2", "--out", str(tmp_path)])
    assert math.isfinite(r["held_out_psnr_db"])
    assert load_file(str(tmp_path / "vae.safetensors"))
    assert json.loads((tmp_path / "vae.json").read_text())["args"]["steps"] == 2
    assert (tmp_path / "recon.png").stat().st_size > 0


def mean_frame_psnr() -> float:
    """The held-out clips against their own per-pixel mean frame (the background, nothing that moves):
    what a model that learnt no motion or objects would score."""
    from kairos_model.vae import psnr
    from training.data.synthetic_physics import PhysicsVideoConfig, SyntheticPhysicsVideo
    from training.train_vae import HELD_OUT_SEED
    ds = SyntheticPhysicsVideo(PhysicsVideoConfig(size=64, frames=17), seed=HELD_OUT_SEED, length=16)
    x, _ = ds.batch(list(range(16)))
    return psnr(x.mean((0, 1), keepdim=True).expand_as(x), x)


@pytest.mark.slow
@pytest.mark.timeout(1800)      # ~3 min alone on 2 cores; longer when sharing them
def test_tiny_vae_learns_to_reconstruct_held_out_clips(tmp_path):
    """1000 steps (a full one-cycle schedule) measured 21.25 dB (2026-11-26) against 17.63 dB for the
    clips' mean frame and 8.6 dB for grey. The README's 2500-step command reached 26.3 dB (goal 25);
    it costs ~12 min of a CI worker, so the suite checks the shorter run."""
    r = main(["--steps", "1000", "--out", str(tmp_path)])
    assert r["held_out_psnr_db"] > mean_frame_psnr() + 2.5
