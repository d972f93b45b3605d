"""Synthetic physics video: the offline stand-in for stage I's open-world video.

Balls under gravity bounce off the walls and off each other (elastic), and pass behind a static
occluder, disappearing and re-appearing. Each clip comes with a caption. Deterministic per index:
clip i of a dataset with seed s is always the same, so held-out clips are just other indices.

    ds = SyntheticPhysicsVideo(PhysicsVideoConfig(size=64, frames=17), seed=0, length=1000)
    frames_tchw, caption = ds[3]        # float32 in [0, 1], [T, 3, H, W]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch

COLORS = {"red": (0.9, 0.15, 0.1), "green": (0.1, 0.75, 0.2), "blue": (0.15, 0.3, 0.95),
          "yellow": (0.95, 0.85, 0.1), "white": (0.95, 0.95, 0.95), "purple": (0.6, 0.2, 0.8)}


@dataclass
class PhysicsVideoConfig:
    """size: frame height = width in pixels. frames: clip length. max_balls: 1..max_balls balls.
    gravity: pixels / frame^2 (scaled by size / 64). restitution: bounce energy kept.
    occluder_prob: chance of a static occluding bar."""
    size: int = 64
    frames: int = 17
    max_balls: int = 3
    gravity: float = 0.35
    restitution: float = 0.9
    occluder_prob: float = 0.5


def _render(pos, radius, colors, bg, occluder, size) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    img = np.broadcast_to(bg, (size, size, 3)).copy()
    for (x, y), r, c in zip(pos, radius, colors):
        d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
        a = np.clip(r - d + 0.5, 0.0, 1.0)[..., None]       # anti-aliased edge
        shade = 1.0 - 0.35 * np.clip(((xx - x + r / 3) ** 2 + (yy - y + r / 3) ** 2) / (r * r), 0, 1)[..., None]
        img = img * (1 - a) + a * (np.asarray(c) * shade)
    if occluder is not None:
        x0, x1 = occluder
        img[:, x0:x1] = (0.35, 0.3, 0.25)
    return img


def generate_clip(cfg: PhysicsVideoConfig, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """One clip: frames [T, H, W, 3] float32 in [0, 1], and its caption."""
    S = cfg.size
    scale = S / 64.0
    n = int(rng.integers(1, cfg.max_balls + 1))
    names = list(rng.choice(list(COLORS), size=n, replace=False))
    radius = rng.uniform(4, 8, size=n) * scale
    pos = np.stack([rng.uniform(radius, S - radius), rng.uniform(radius, S / 2, size=n)], axis=1)
    vel = rng.normal(0, 1.5, size=(n, 2)) * scale
    bg = np.asarray(rng.uniform(0.0, 0.25, size=3), dtype=np.float32)
    occluder = None
    if rng.random() < cfg.occluder_prob:
        w = int(rng.integers(6, 14) * scale)
        x0 = int(rng.integers(0, S - w))
        occluder = (x0, x0 + w)
    g = cfg.gravity * scale
    frames = []
    bounced = False
    for _ in range(cfg.frames):
        frames.append(_render(pos, radius, [COLORS[c] for c in names], bg, occluder, S))
        vel[:, 1] += g
        pos = pos + vel
        for i in range(n):                                      # walls
            for ax in (0, 1):
                if pos[i, ax] < radius[i]:
                    pos[i, ax] = 2 * radius[i] - pos[i, ax]
                    vel[i, ax] = -vel[i, ax] * cfg.restitution
                    bounced = True
                elif pos[i, ax] > S - radius[i]:
                    pos[i, ax] = 2 * (S - radius[i]) - pos[i, ax]
                    vel[i, ax] = -vel[i, ax] * cfg.restitution
                    bounced = True
        for i in range(n):                                      # elastic collisions, equal density
            for j in range(i + 1, n):
                d = pos[j] - pos[i]
                dist = np.linalg.norm(d)
                if 0 < dist < radius[i] + radius[j]:
                    u = d / dist
                    mi, mj = radius[i] ** 2, radius[j] ** 2
                    rel = np.dot(vel[i] - vel[j], u)
                    if rel > 0:
                        vel[i] -= 2 * mj / (mi + mj) * rel * u
                        vel[j] += 2 * mi / (mi + mj) * rel * u
    balls = " and ".join(f"a {c} ball" for c in names)
    caption = f"{balls} {'fall' if n > 1 else 'falls'}" + (" and bounce" if bounced and n > 1 else
                                                           " and bounces" if bounced else "")
    if occluder is not None:
        caption += ", passing behind a post"
    return np.stack(frames).astype(np.float32), caption


class SyntheticPhysicsVideo(torch.utils.data.Dataset):
    """Map-style dataset of `length` clips; item i -> (frames [T, 3, H, W] float32 in [0, 1], caption)."""

    def __init__(self, cfg: PhysicsVideoConfig = PhysicsVideoConfig(), seed: int = 0, length: int = 10_000):
        self.cfg, self.seed, self.length = cfg, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        if not 0 <= i < self.length:
            raise IndexError(i)
        frames, caption = generate_clip(self.cfg, np.random.default_rng([self.seed, i]))
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), caption

    def batch(self, indices: List[int]) -> Tuple[torch.Tensor, List[str]]:
        items = [self[i] for i in indices]
        return torch.stack([f for f, _ in items]), [c for _, c in items]
