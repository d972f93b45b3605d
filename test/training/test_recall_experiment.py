"""Theorem 1 at small scale: after a gap longer than any local layer can see, a window-only stack
is at chance and the hybrid memory recalls the cue."""
import pytest
import torch

from training.experiments.recall import RecallTaskConfig, make_batch, train_one


def test_recall_task_puts_the_cue_beyond_the_local_reach():
    task = RecallTaskConfig(frames=32, noise=0.0)            # structure only, no noise
    x, y = make_batch(task, 64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 32, task.tokens_per_frame, task.features)
    cue_flag = x[..., task.classes] > 0                      # [B, T, N]
    assert cue_flag.all(-1).sum(1).eq(1).all()               # one cue frame, all its tokens
    assert not cue_flag[:, task.cue_frames:].any()           # only in the first cue_frames frames
    cue_frame = cue_flag.all(-1).float().argmax(1)
    shown = x[torch.arange(64), cue_frame, 0, :task.classes].argmax(-1)
    assert (shown == y).all()
    assert (x[:, -1, :, task.classes + 1] > 0).all() and not (x[:, :-1, :, task.classes + 1] > 0).any()
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
