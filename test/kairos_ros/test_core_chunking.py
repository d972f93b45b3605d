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
