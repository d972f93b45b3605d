"""The hybrid linear temporal memory: a stack of pre-norm blocks whose token mixers follow a pattern
of SWA (short term), DSWA (mid term) and GatedDeltaNet (long term) layers.

Pattern entries: 'swa', 'dswa<d>' (e.g. 'dswa6', 'dswa12'), 'gdn', and 'full' (full causal
attention with a growing cache: the baseline, not part of Kairos).

    stack = HybridMemory(HybridMemoryConfig.preset("tiny"))
    y, state = stack(x_btnc)                      # training form, whole clip
    state = stack.init_state(batch, tokens_per_frame)
    y_t, state = stack(x_t_b1nc, state)           # streaming form, state carried across steps
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from kairos_model.memory.attention import FrameAttention, FrameAttentionConfig, KVCacheState
from kairos_model.memory.gated_deltanet import GatedDeltaNet, GatedDeltaNetConfig
from kairos_model.ops.frame_attention import FrameMaskSpec

_ENTRY = re.compile(r"^(swa|gdn|full|dswa(\d+))$")


@dataclass
class HybridMemoryConfig:
    """Configuration of the hybrid temporal memory stack.

    dim: width. pattern: token mixer of each layer, e.g. ('swa', 'dswa6', 'gdn').
    heads, head_dim: attention heads (also the GDN heads and key/value sizes).
    swa_window: frames before the current one that SWA sees (the paper ties it to tokens per frame:
      the window in tokens is swa_window * N). dswa_taps: frames a DSWA layer sees (t, t-d, ...).
    mlp_ratio: hidden size of the SwiGLU MLP relative to dim.
    gdn_update_rule, gdn_backend, gdn_max_half_life: see GatedDeltaNetConfig.
    """
    dim: int = 64
    pattern: Tuple[str, ...] = ("swa", "dswa6", "gdn", "swa", "dswa12", "gdn")
    heads: int = 4
    head_dim: int = 16
    swa_window: int = 4
    dswa_taps: int = 4
    mlp_ratio: float = 2.0
    gdn_update_rule: str = "kairos"
    gdn_backend: str = "auto"
    gdn_max_half_life: float = 4096.0

    def __post_init__(self):
        self.pattern = tuple(self.pattern)
        for p in self.pattern:
            if not _ENTRY.match(p):
                raise ValueError(f"unknown layer kind {p!r} in pattern; expected 'swa', 'dswa<d>' "
                                 "(e.g. 'dswa6'), 'gdn' or 'full'")
        if not self.pattern:
            raise ValueError("pattern must name at least one layer")

    @classmethod
    def preset(cls, name: str, **overrides) -> "HybridMemoryConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **overrides)

    @classmethod
    def from_dict(cls, d: dict) -> "HybridMemoryConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown HybridMemoryConfig keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def mixer_config(self, entry: str) -> Union[FrameAttentionConfig, GatedDeltaNetConfig]:
        if entry == "gdn":
            return GatedDeltaNetConfig(dim=self.dim, heads=self.heads, head_k_dim=self.head_dim,
                                       head_v_dim=self.head_dim, update_rule=self.gdn_update_rule,
                                       backend=self.gdn_backend, max_half_life=self.gdn_max_half_life)
        if entry == "swa":
            mask = FrameMaskSpec("swa", window=self.swa_window)
        elif entry == "full":
            mask = FrameMaskSpec("full")
        else:
            mask = FrameMaskSpec("dswa", dilation=int(entry[4:]), taps=self.dswa_taps)
        return FrameAttentionConfig(dim=self.dim, heads=self.heads, head_dim=self.head_dim, mask=mask)


PRESETS = {
    "tiny": HybridMemoryConfig(),
    "small": HybridMemoryConfig(dim=256, heads=8, head_dim=32,
                                pattern=("swa", "dswa6", "gdn", "swa", "dswa12", "gdn") * 2),
    "swa_only": HybridMemoryConfig(pattern=("swa",) * 6),
    "full_attention": HybridMemoryConfig(pattern=("full",) * 6),
}

LayerState = Union[KVCacheState, torch.Tensor]


@dataclass
class HybridState:
    """Streaming state of the whole stack: one entry per layer, in pattern order
    (KVCacheState for attention layers, a [B, H, K, V] tensor for GDN layers)."""
    layers: List[LayerState] = field(default_factory=list)

    def nbytes(self) -> int:
        return sum(s.nbytes() if isinstance(s, KVCacheState) else s.numel() * s.element_size()
                   for s in self.layers)

    def tensors(self) -> List[torch.Tensor]:
        """Every tensor of the state in one fixed order (a KV cache: k, v, slot frames, next frame): the
        flat form the exported graphs take and the one CUDA graphs update in place."""
        out: List[torch.Tensor] = []
        for s in self.layers:
            out += [s.k, s.v, s.slot_frames, s.next_frame] if isinstance(s, KVCacheState) else [s]
        return out


def init_mixer_state(mixer: nn.Module, batch: int, tokens_per_frame: int, device=None, dtype=None) -> LayerState:
    """The empty streaming state of one temporal mixer (GDN matrix or attention KV cache)."""
    if isinstance(mixer, GatedDeltaNet):
        return mixer.init_state(batch, device, dtype)
    return mixer.init_state(batch, tokens_per_frame, device, dtype)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w3 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class HybridBlock(nn.Module):
    """x + mixer(norm(x)), then x + mlp(norm(x)). x: [B, T, N, C]."""

    def __init__(self, cfg: HybridMemoryConfig, entry: str):
        super().__init__()
        self.entry = entry
        mcfg = cfg.mixer_config(entry)
        self.mixer = GatedDeltaNet(mcfg) if entry == "gdn" else FrameAttention(mcfg)
        self.norm1 = nn.RMSNorm(cfg.dim)
        self.norm2 = nn.RMSNorm(cfg.dim)
        self.mlp = SwiGLU(cfg.dim, int(cfg.dim * cfg.mlp_ratio))

    def forward(self, x, state=None):
        h, state = self.mixer(self.norm1(x), state)
        x = x + h
        return x + self.mlp(self.norm2(x)), state


class HybridMemory(nn.Module):
    """The stack. forward(x [B, T, N, C], state: HybridState | None) -> (y [B, T, N, C], state).

    With state=None the clip is processed in training form (block masks, chunked GDN) and the
    returned state is None; pass ``init_state(...)`` to stream, in as many pieces as wanted.
    """

    def __init__(self, cfg: HybridMemoryConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(HybridBlock(cfg, e) for e in cfg.pattern)
        self.norm = nn.RMSNorm(cfg.dim)

    def init_state(self, batch: int, tokens_per_frame: int, device=None, dtype=None) -> HybridState:
        return HybridState([init_mixer_state(b.mixer, batch, tokens_per_frame, device, dtype) for b in self.blocks])

    def forward(self, x: torch.Tensor, state: Optional[HybridState] = None
                ) -> Tuple[torch.Tensor, Optional[HybridState]]:
        if x.dim() != 4 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"x must be [B, T, N, C] with C = {self.cfg.dim}, got {tuple(x.shape)}")
        if state is not None:
            if not isinstance(state, HybridState) or len(state.layers) != len(self.blocks):
                n = len(state.layers) if isinstance(state, HybridState) else "?"
                raise ValueError(f"state holds {n} layers but this stack has {len(self.blocks)} "
                                 f"(pattern {self.cfg.pattern}); was it made by another config?")
        new_layers = []
        for i, block in enumerate(self.blocks):
            x, s = block(x, None if state is None else state.layers[i])
            new_layers.append(s)
        return self.norm(x), (None if state is None else HybridState(new_layers))
