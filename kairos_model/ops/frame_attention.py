"""Frame-structured causal attention: the masks of SWA, DSWA and full causal attention, in one place.

Tokens are laid out frame by frame, N spatial tokens per frame. Every mask here is decided at the
level of frames: a query token in frame ``fq`` may see a key token in frame ``fk`` when

    full:  0 <= fq - fk
    swa:   0 <= fq - fk <= window                          (current frame and the previous `window`)
    dswa:  0 <= fq - fk,  (fq - fk) % d == 0,  (fq - fk) / d < taps     (frames t, t-d, ..., t-(taps-1)d)

and ``fk >= 0`` (frame -1 marks an empty cache slot). All tokens of a frame see each other: a frame
is one instant. No kind ever lets a query see a later frame.

Layout: q, k, v are [B, L, H, D] with L = T * N tokens (frame-major), the same as the GDN ops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Kind = Literal["full", "swa", "dswa"]


@dataclass(frozen=True)
class FrameMaskSpec:
    """Which past frames a frame may attend to.

    kind: 'full' (every past frame), 'swa' (the previous `window` frames) or 'dswa'
    (frames t - j*dilation for j < taps).
    """
    kind: Kind = "swa"
    window: int = 4
    dilation: int = 6
    taps: int = 4

    def __post_init__(self):
        if self.kind not in ("full", "swa", "dswa"):
            raise ValueError(f"unknown attention kind {self.kind!r}; expected 'full', 'swa' or 'dswa'")
        if self.window < 0 or self.dilation < 1 or self.taps < 1:
            raise ValueError(f"need window >= 0, dilation >= 1, taps >= 1; got {self}")

    @property
    def cache_frames(self) -> int | None:
        """Past frames a streaming cache must hold (None: unbounded, for 'full')."""
        if self.kind == "full":
            return None
        if self.kind == "swa":
            return self.window
        return (self.taps - 1) * self.dilation

    @property
    def reach(self) -> int | None:
        """How many frames back one layer can see (None: unbounded)."""
        return self.cache_frames


def frame_mask(q_frames: torch.Tensor, k_frames: torch.Tensor, spec: FrameMaskSpec) -> torch.Tensor:
    """Boolean mask [Tq, Tk], True where query frame i may attend to key frame j.

    q_frames: [Tq] frame indices of the queries; k_frames: [Tk] frame indices of the keys
    (-1 for an empty cache slot). Works as well on per-token frame indices ([T * N]).
    """
    dq = q_frames.unsqueeze(-1) - k_frames.unsqueeze(0)
    ok = (dq >= 0) & (k_frames >= 0).unsqueeze(0)
    if spec.kind == "swa":
        ok &= dq <= spec.window
    elif spec.kind == "dswa":
        ok &= (dq % spec.dilation == 0) & (dq < spec.dilation * spec.taps)
    return ok


def token_mask(mask_frames: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """[Tq, Tk] frame mask -> [Tq * N, Tk * N] token mask (every token of a frame alike)."""
    n = tokens_per_frame
    return mask_frames.repeat_interleave(n, 0).repeat_interleave(n, 1)


def token_frames(frames: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """[T] frame indices -> [T * N] frame index of each token (frame-major layout)."""
    return frames.repeat_interleave(tokens_per_frame)


def rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary embedding over time. x: [B, L, H, D] (D even), positions: [L] (frame index).

    Because a rotation by p_q then the inverse of p_k depends on p_q - p_k only, keys can be cached
    already rotated and attention stays the same however far the stream has run.
    """
    D = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float64) / D)
    ang = positions.to(torch.float64).unsqueeze(-1) * inv_freq                 # [L, D/2]
    cos = ang.cos().to(x.dtype)[None, :, None, :]
    sin = ang.sin().to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax attention. q: [B, Lq, H, D], k, v: [B, Lk, H, D], mask: [Lq, Lk] bool -> [B, Lq, H, D]."""
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       attn_mask=mask)
    return o.transpose(1, 2)


def masked_attention_reference(q, k, v, mask):
    """The same attention, written out: softmax(q k^T / sqrt(D) + log mask) v."""
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    s = s.masked_fill(~mask, -torch.inf)
    return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v)
