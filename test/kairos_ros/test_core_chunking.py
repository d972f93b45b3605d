"""Chunk execution strategies turn chunks into per-tick commands as documented."""
import numpy as np
import pytest

from kairos_ros.core.chunking import ExecuteThenReplan, TemporalEnsemble


def test_execute_then_replan_runs_the_prefix_then_asks_again():
    ex = ExecuteThenReplan(execution_horizon=3)
    assert ex.needs_chunk(0) and ex.command(0) is None
    ex.add(np.arange(5)[:, None] * np.ones((1, 2)), start_tick=0)
    assert [ex.command(t)[0] for t in range(3)] == [0, 1, 2]
    assert not ex.needs_chunk(2) and ex.needs_chunk(3)
    assert ex.command(7) is None                     # past the chunk: the caller holds
    with pytest.raises(ValueError):
        ExecuteThenReplan(0)


def test_temporal_ensemble_weights_newer_chunks_more():
    ens = TemporalEnsemble(decay=1.0)
    ens.add(np.zeros((4, 1)), start_tick=0)
    ens.add(np.ones((4, 1)), start_tick=1)
    w_old, w_new = np.exp(-1.0 * 1), np.exp(0.0)      # at tick 1: ages 1 and 0
    assert ens.command(1)[0] == pytest.approx(w_new / (w_old + w_new))
    assert ens.command(0)[0] == 0.0 and ens.command(4)[0] == 1.0 and ens.command(9) is None
    assert TemporalEnsemble(decay=0.0).command(0) is None


def test_real_time_chunking_hands_over_the_steps_that_run_during_inference():
    from kairos_ros.core.chunking import RealTimeChunking
    s = RealTimeChunking(execution_horizon=4, delay=2)
    assert s.prefix(0) is None
    chunk = np.arange(8 * 2, dtype=float).reshape(8, 2)
    s.add(chunk, start_tick=0)
    assert not s.needs_chunk(3) and s.needs_chunk(4)
    np.testing.assert_array_equal(s.prefix(4), chunk[4:6])
    with pytest.raises(ValueError):
        RealTimeChunking(execution_horizon=2, delay=2)


def test_inpainted_prefix_is_kept_exactly_by_the_sampler():
    import torch

    from kairos_model.checkpoint import build_parts
    from kairos_model.world_model import WorldModelConfig
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny")
    m = build_parts(cfg)["world_model"].eval()
    with torch.no_grad():                     # leave the zero-initialised (untrained) output gates
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    lat = torch.randn(1, 3, cfg.latent_channels, *cfg.latent_hw)
    ctx, _ = m.encode_context(lat, torch.zeros(1, 3, cfg.proprio_dim), torch.randn(1, 3, cfg.und.tokens, cfg.dim))
    prefix = torch.randn(1, 1, 3, cfg.action_dim)
    _, act = m.sample(ctx, torch.tensor([2]), steps=4, action_prefix=prefix, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(act[:, :, :3], prefix)
    _, free = m.sample(ctx, torch.tensor([2]), steps=4, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(free[:, :, 3:], act[:, :, 3:])      # the rest follows the prefix
