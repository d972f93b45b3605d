"""Sliding-window (SWA), dilated sliding-window (DSWA) and full causal attention over frames.

One module, ``FrameAttention``, with two forms that compute the same thing:
- training form (``state=None``): the whole clip at once under the frame block mask;
- streaming form (``state`` given): new frames attend to a fixed-size ring-buffer KV cache plus
  themselves, and the cache is updated. For SWA/DSWA the cache never grows; only the baseline
  kind 'full' keeps a growing cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn

from kairos_model.ops.frame_attention import (FrameMaskSpec, frame_mask, masked_attention, rope,
                                              token_frames, token_mask)


@dataclass
class FrameAttentionConfig:
    """Configuration of one frame-attention layer.

    dim: model width. heads, head_dim: attention heads and their size (head_dim even, for RoPE).
    mask: which frames each frame sees (see FrameMaskSpec). rope_base: RoPE base over frame index.
    qk_norm: RMS-normalise queries and keys per head (stabilises long streams).
    """
    dim: int = 64
    heads: int = 4
    head_dim: int = 16
    mask: FrameMaskSpec = FrameMaskSpec()
    rope_base: float = 10000.0
    qk_norm: bool = True

    def __post_init__(self):
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")


@dataclass
class KVCacheState:
    """Streaming state of one attention layer.

    k, v: [B, S * N, H, D] keys (already rotated) and values of S cached frames, N tokens each.
    slot_frames: [S] long, the frame index held by each slot (-1: empty).
    next_frame: [] long, index the next incoming frame will get.
    For SWA/DSWA, S is fixed (ring buffer, slot = frame % S); for 'full', S grows.
    """
    k: torch.Tensor
    v: torch.Tensor
    slot_frames: torch.Tensor
    next_frame: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.slot_frames, self.next_frame))


class FrameAttention(nn.Module):
    """Causal multi-head attention under a frame mask. x: [B, T, N, C] -> [B, T, N, C]."""

    def __init__(self, cfg: FrameAttentionConfig):
        super().__init__()
        self.cfg = cfg
        inner = cfg.heads * cfg.head_dim
        self.qkv = nn.Linear(cfg.dim, 3 * inner, bias=False)
        self.out = nn.Linear(inner, cfg.dim, bias=False)
        self.q_norm = nn.RMSNorm(cfg.head_dim) if cfg.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(cfg.head_dim) if cfg.qk_norm else nn.Identity()

    def init_state(self, batch: int, tokens_per_frame: int, device=None, dtype=None) -> KVCacheState:
        S = self.cfg.mask.cache_frames or 0
        H, D = self.cfg.heads, self.cfg.head_dim
        dtype = dtype or self.qkv.weight.dtype
        device = device or self.qkv.weight.device
        z = torch.zeros(batch, S * tokens_per_frame, H, D, device=device, dtype=dtype)
        return KVCacheState(k=z, v=z.clone(), slot_frames=torch.full((S,), -1, dtype=torch.long, device=device),
                            next_frame=torch.zeros((), dtype=torch.long, device=device))

    def check_state(self, state: KVCacheState, batch: int, tokens_per_frame: int) -> None:
        S = self.cfg.mask.cache_frames
        H, D = self.cfg.heads, self.cfg.head_dim
        if not isinstance(state, KVCacheState):
            raise TypeError(f"a {self.cfg.mask.kind} layer expects a KVCacheState, got {type(state).__name__}")
        n_slots = state.slot_frames.shape[0]
        expect = (batch, n_slots * tokens_per_frame, H, D)
        if (S is not None and n_slots != S) or state.k.shape != expect or state.v.shape != expect:
            raise ValueError(
                f"KV cache of shape {tuple(state.k.shape)} with {n_slots} slots does not fit this "
                f"{self.cfg.mask.kind} layer: expected [B, S*N, H, D] = "
                f"{(batch, (S if S is not None else n_slots) * tokens_per_frame, H, D)} with S = {S}; "
                "was the state made by another config or for another tokens-per-frame?")

    def forward(self, x: torch.Tensor, state: Optional[KVCacheState] = None
                ) -> Tuple[torch.Tensor, Optional[KVCacheState]]:
        if x.dim() != 4 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"x must be [B, T, N, C] with C = {self.cfg.dim}, got {tuple(x.shape)}")
        B, T, N, C = x.shape
        H, D = self.cfg.heads, self.cfg.head_dim
        if state is not None:
            self.check_state(state, B, N)
        q, k, v = self.qkv(x.reshape(B, T * N, C)).view(B, T * N, 3, H, D).unbind(2)
        q, k = self.q_norm(q), self.k_norm(k)
        start = torch.zeros((), dtype=torch.long, device=x.device) if state is None else state.next_frame
        frames = start + torch.arange(T, device=x.device)                       # [T]
        pos = token_frames(frames, N)                                           # [T*N]
        q, k = rope(q, pos, self.cfg.rope_base), rope(k, pos, self.cfg.rope_base)
        if state is None:
            o = masked_attention(q, k, v, token_mask(frame_mask(frames, frames, self.cfg.mask), N))
            return self.out(o.reshape(B, T, N, H * D)), None
        k_all = torch.cat([state.k, k], dim=1)
        v_all = torch.cat([state.v, v], dim=1)
        k_frames = torch.cat([state.slot_frames, frames])
        o = masked_attention(q, k_all, v_all, token_mask(frame_mask(frames, k_frames, self.cfg.mask), N))
        return self.out(o.reshape(B, T, N, H * D)), self._update_cache(state, k, v, frames, N)

    def _update_cache(self, state: KVCacheState, k, v, frames, N) -> KVCacheState:
        S = self.cfg.mask.cache_frames
        if S is None:  # the growing baseline
            return KVCacheState(torch.cat([state.k, k], 1), torch.cat([state.v, v], 1),
                                torch.cat([state.slot_frames, frames]), frames[-1] + 1)
        next_frame = frames[-1] + 1
        if S == 0:
            return KVCacheState(state.k, state.v, state.slot_frames, next_frame)
        keep = min(S, frames.shape[0])               # only the newest S frames can ever be seen again
        frames = frames[-keep:]
        slots = frames % S                                                   # ring buffer positions
        tok = (slots.unsqueeze(-1) * N + torch.arange(N, device=frames.device)).flatten()
        n_new = keep * N
        return KVCacheState(k=state.k.index_copy(1, tok, k[:, -n_new:]),
                            v=state.v.index_copy(1, tok, v[:, -n_new:]),
                            slot_frames=state.slot_frames.index_copy(0, slots, frames),
                            next_frame=next_frame)
