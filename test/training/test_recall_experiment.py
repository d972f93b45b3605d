"""Theorem 1 at small scale: after a gap longer than any local layer can see, a window-only stack
is at chance and the hybrid memory recalls the cue."""
import pytest
import torch

from training.experiments.recall import RecallTaskConfig, make_batch, train_one


def test_recall_task_puts_the_cue_beyond_the_local_reach():
    task = RecallTaskConfig(frames=32)
    x, y = make_batch(task, 64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 32, task.tokens_per_frame, task.features)
    cue_flag = x[..., task.classes].mean(-1) > 0.75 * task.cue_strength   # [B, T]; noise mean ~ N(0, 1/4)
    assert (cue_flag[:, :task.cue_frames].sum(1) == 1).all() and not cue_flag[:, task.cue_frames:].any()
    cue_frame = cue_flag.float().argmax(1)
    shown = x[torch.arange(64), cue_frame, :, :task.classes].mean(1).argmax(-1)
    assert (shown == y).all()
    with pytest.raises(ValueError, match="would not test memory"):
        train_one("hybrid", RecallTaskConfig(frames=20), steps=1, batch=2, lr=1e-3, seed=0)


@pytest.mark.slow
def test_hybrid_recalls_what_a_sliding_window_cannot():
    task = RecallTaskConfig(frames=32)
    swa = train_one("swa_only", task, steps=600, batch=32, lr=3e-3, seed=0)
    hyb = train_one("hybrid", task, steps=600, batch=32, lr=3e-3, seed=0)
    chance = 1 / task.classes
    assert swa["accuracy"] < chance + 0.05
    assert hyb["accuracy"] > 0.9
