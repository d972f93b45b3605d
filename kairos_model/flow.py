"""Flow matching, as the paper writes it, and the shape-aware timestep shift. Pure functions.

    z_s = (1 - s) z_0 + s eps,        target  V* = eps - z_0,        L = || V(z_s, s, c) - V* ||^2

s = 0 is data, s = 1 is noise. Sampling integrates dz/ds = V from s = 1 down to s = 0 (Euler).

Shape-aware shift: s~ = k s / (1 + (k - 1) s) with k = exp(f(L)) * sqrt(F), L the spatial tokens
per frame and F the number of (latent) frames. f is the resolution term of SD3 / Flux: linear in L,
f(L) = f_min + (f_max - f_min) (L - L_min) / (L_max - L_min), so bigger frames and longer clips
spend more of the schedule at high noise, where their coarse structure is decided.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch


@dataclass
class ShiftConfig:
    """f(L) of the shape-aware shift: f_min at l_min tokens per frame, f_max at l_max, linear between
    (extrapolated outside). enabled=False makes k = 1 (no shift)."""
    l_min: int = 16
    l_max: int = 4096
    f_min: float = 0.0
    f_max: float = 1.15
    enabled: bool = True

    def f(self, tokens_per_frame: int) -> float:
        return self.f_min + (self.f_max - self.f_min) * (tokens_per_frame - self.l_min) / (self.l_max - self.l_min)


def shape_shift_factor(tokens_per_frame: int, frames: int, cfg: ShiftConfig = ShiftConfig()) -> float:
    """k = exp(f(L)) * sqrt(F)."""
    if tokens_per_frame < 1 or frames < 1:
        raise ValueError(f"need tokens_per_frame >= 1 and frames >= 1, got {tokens_per_frame}, {frames}")
    if not cfg.enabled:
        return 1.0
    return math.exp(cfg.f(tokens_per_frame)) * math.sqrt(frames)


def shift_sigma(sigma: torch.Tensor, k: float) -> torch.Tensor:
    """s~ = k s / (1 + (k - 1) s). Monotone on [0, 1], fixes 0 and 1, identity for k = 1."""
    if k <= 0:
        raise ValueError(f"shift factor k must be > 0, got {k}")
    return k * sigma / (1 + (k - 1) * sigma)


def interpolate(z0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """z_s = (1 - s) z0 + s eps. z0, eps: [B, ...]; sigma: [B] (or broadcastable)."""
    s = _expand(sigma, z0)
    return (1 - s) * z0 + s * eps


def velocity_target(z0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - z0


def flow_matching_loss(pred: torch.Tensor, z0: torch.Tensor, eps: torch.Tensor,
                       mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared error between V(z_s) and eps - z0, averaged over the elements where mask is True
    (mask broadcastable to pred; None: all)."""
    err = (pred - velocity_target(z0, eps)).pow(2)
    if mask is None:
        return err.mean()
    mask = mask.expand_as(err).to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp_min(1)


def sample_training_sigma(batch: int, k: float, generator: Optional[torch.Generator] = None,
                          device=None) -> torch.Tensor:
    """Training noise levels: u ~ U(0, 1), then shifted with the shape-aware k. [B]"""
    u = torch.rand(batch, generator=generator, device=device)
    return shift_sigma(u, k)


def sigma_schedule(steps: int, k: float = 1.0) -> torch.Tensor:
    """steps + 1 decreasing noise levels from 1 to 0, shifted by k."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), k).float()


def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 sigmas: torch.Tensor) -> torch.Tensor:
    """Integrate dz/ds = velocity(z, s) from sigmas[0] (= 1, z = noise) to sigmas[-1] (= 0).

    velocity(z [B, ...], s [B]) -> [B, ...]. Any number of steps; the sampler owns no parameters.
    """
    z = noise
    B = noise.shape[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        v = velocity(z, s.expand(B).to(noise.device, noise.dtype))
        z = z + (s_next - s).to(z.dtype) * v
    return z


def cfg_velocity(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: v_uncond + scale (v_cond - v_uncond); scale 1 is the conditional model."""
    return v_uncond + scale * (v_cond - v_uncond)


def _expand(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if sigma.dim() == 0:
        return sigma
    if sigma.shape[0] != like.shape[0]:
        raise ValueError(f"sigma must be [B] with B = {like.shape[0]}, got {tuple(sigma.shape)}")
    return sigma.reshape(sigma.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)
