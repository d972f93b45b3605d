"""How action chunks become the commands of each control tick. Plain Python, no ROS.

- ExecuteThenReplan: run the first `execution_horizon` steps of a chunk, then ask for a new one.
- TemporalEnsemble: every tick, average the predictions that all still-valid chunks make for this
  tick, weighted exp(-k * age) as in ACT (older chunks count less for k > 0).
- RealTimeChunking: execute-then-replan whose next chunk is conditioned on the part of the current
  one that runs while it is computed (`delay` ticks): the sampler inpaints those steps (the
  "hard" variant of real-time chunking, Black et al. 2025), so consecutive chunks join without a jump.
All take chunks as [H, J] arrays stamped with the tick they start at.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Tuple

import numpy as np


class ExecuteThenReplan:
    def __init__(self, execution_horizon: int):
        if execution_horizon < 1:
            raise ValueError(f"execution_horizon must be >= 1, got {execution_horizon}")
        self.e = execution_horizon
        self.chunk: Optional[np.ndarray] = None
        self.start = 0

    def needs_chunk(self, tick: int) -> bool:
        return self.chunk is None or tick - self.start >= min(self.e, len(self.chunk))

    def add(self, chunk_hj: np.ndarray, start_tick: int) -> None:
        self.chunk, self.start = np.asarray(chunk_hj, dtype=np.float64), start_tick

    def command(self, tick: int) -> Optional[np.ndarray]:
        """The command [J] for this tick, or None when no chunk covers it (the caller holds)."""
        if self.chunk is None:
            return None
        i = tick - self.start
        return self.chunk[i] if 0 <= i < len(self.chunk) else None

    def reset(self) -> None:
        self.chunk = None


class RealTimeChunking(ExecuteThenReplan):
    def __init__(self, execution_horizon: int, delay: int = 1):
        super().__init__(execution_horizon)
        if not 0 <= delay < execution_horizon:
            raise ValueError(f"delay must be in [0, execution_horizon), got {delay}")
        self.delay = delay

    def prefix(self, tick: int) -> Optional[np.ndarray]:
        """[d, J]: the current chunk's commands for the `delay` ticks from `tick` (None if not covered)."""
        if self.chunk is None or self.delay == 0:
            return None
        i = tick - self.start
        if i < 0 or i + self.delay > len(self.chunk):
            return None
        return self.chunk[i:i + self.delay]


class TemporalEnsemble:
    def __init__(self, decay: float = 0.01, max_chunks: int = 32):
        self.k = decay
        self.chunks: Deque[Tuple[int, np.ndarray]] = deque(maxlen=max_chunks)

    def needs_chunk(self, tick: int) -> bool:
        return True                                      # a new prediction every tick

    def add(self, chunk_hj: np.ndarray, start_tick: int) -> None:
        self.chunks.append((start_tick, np.asarray(chunk_hj, dtype=np.float64)))

    def command(self, tick: int) -> Optional[np.ndarray]:
        preds, weights = [], []
        for start, c in self.chunks:
            i = tick - start
            if 0 <= i < len(c):
                preds.append(c[i])
                weights.append(np.exp(-self.k * (tick - start)))
        if not preds:
            return None
        w = np.asarray(weights) / np.sum(weights)
        return np.tensordot(w, np.stack(preds), axes=1)

    def reset(self) -> None:
        self.chunks.clear()
