"""GatedDeltaNet: the long-term, linear-cost memory of the hybrid stack.

Per head, from the paper ("Hybrid Linear Temporal Attention"):

    q_t = l2norm(W_Q x_t), k_t = l2norm(W_K x_t), v_t = W_V x_t
    beta_t = sigmoid(W_beta x_t), alpha_t = sigmoid(W_alpha x_t)
    S_t = alpha_t S_{t-1} + beta_t (v_t - S_{t-1} k_t) k_t^T,  o_t = S_t q_t        (update_rule='kairos')

or, with update_rule='gated_deltanet', the Gated DeltaNet paper's read of the decayed state,
``v_old = alpha_t S_{t-1} k_t``. Both run through the same op (kairos_model.ops.gated_delta_rule).
As in Gated DeltaNet the per-head output is RMS-normalised, gated by silu(W_g x) and projected out.

Tokens arrive frame-major ([B, T, N, C] flattened to T*N tokens), so the memory reads and writes one
token at a time in raster order. There is no short convolution: over a flattened frame it would mix
unrelated neighbours in raster order.

The decay bias is initialised so that the heads' memory half-lives spread from about one frame to
hundreds of frames of tokens; at alpha = sigmoid(0) = 0.5 the memory would forget within a frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from kairos_model.ops.gated_delta_rule import Backend, gated_delta_rule, kairos_to_gdn_inputs


@dataclass
class GatedDeltaNetConfig:
    """Configuration of one GatedDeltaNet layer.

    dim: model width. heads: memory heads. head_k_dim / head_v_dim: key and value size per head
    (state per layer [B, heads, head_k_dim, head_v_dim]).
    update_rule: 'kairos' (paper's equation) or 'gated_deltanet' (decay before the read).
    min_half_life / max_half_life: range of memory half-lives, in tokens, the decay bias starts at.
    backend: 'auto' (fla Triton kernels on CUDA, pure torch elsewhere), 'torch' or 'fla'.
    chunk_size: chunk length of the pure-torch chunked form.
    """
    dim: int = 64
    heads: int = 4
    head_k_dim: int = 16
    head_v_dim: int = 16
    update_rule: Literal["kairos", "gated_deltanet"] = "kairos"
    min_half_life: float = 4.0
    max_half_life: float = 4096.0
    backend: Backend = "auto"
    chunk_size: int = 64

    def __post_init__(self):
        if self.update_rule not in ("kairos", "gated_deltanet"):
            raise ValueError(f"update_rule must be 'kairos' or 'gated_deltanet', got {self.update_rule!r}")
        if not 1.0 <= self.min_half_life <= self.max_half_life:
            raise ValueError("need 1 <= min_half_life <= max_half_life")


class GatedDeltaNet(nn.Module):
    """x: [B, T, N, C] -> [B, T, N, C], with state [B, H, K, V] in and out."""

    def __init__(self, cfg: GatedDeltaNetConfig):
        super().__init__()
        self.cfg = cfg
        H, K, V = cfg.heads, cfg.head_k_dim, cfg.head_v_dim
        self.q_proj = nn.Linear(cfg.dim, H * K, bias=False)
        self.k_proj = nn.Linear(cfg.dim, H * K, bias=False)
        self.v_proj = nn.Linear(cfg.dim, H * V, bias=False)
        self.beta_proj = nn.Linear(cfg.dim, H)
        self.alpha_proj = nn.Linear(cfg.dim, H)
        self.gate_proj = nn.Linear(cfg.dim, H * V, bias=False)
        self.o_norm = nn.RMSNorm(V)
        self.o_proj = nn.Linear(H * V, cfg.dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # alpha = 2^(-1/half_life): half-lives spread log-uniformly over the heads.
        hl = torch.logspace(math.log10(self.cfg.min_half_life), math.log10(self.cfg.max_half_life),
                            self.cfg.heads)
        alpha = 2.0 ** (-1.0 / hl)
        with torch.no_grad():
            self.alpha_proj.weight.mul_(0.1)
            self.alpha_proj.bias.copy_(torch.log(alpha / (1 - alpha)))
            self.beta_proj.bias.zero_()

    def init_state(self, batch: int, device=None, dtype=None) -> torch.Tensor:
        """Zero memory S: [B, H, K, V]."""
        w = self.q_proj.weight
        return torch.zeros(batch, self.cfg.heads, self.cfg.head_k_dim, self.cfg.head_v_dim,
                           device=device or w.device, dtype=dtype or w.dtype)

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"x must be [B, T, N, C] with C = {self.cfg.dim}, got {tuple(x.shape)}")
        B, T, N, C = x.shape
        H, K, V = self.cfg.heads, self.cfg.head_k_dim, self.cfg.head_v_dim
        if state is not None and not isinstance(state, torch.Tensor):
            raise TypeError(f"a GDN layer expects its state as a [B, H, K, V] tensor, got {type(state).__name__}")
        if state is not None and state.shape != (B, H, K, V):
            raise ValueError(f"GDN state must be [B, H, K, V] = {(B, H, K, V)}, got {tuple(state.shape)}; "
                             "was it made by another config?")
        xt = x.reshape(B, T * N, C)
        q = F.normalize(self.q_proj(xt).view(B, -1, H, K), dim=-1)
        k = F.normalize(self.k_proj(xt).view(B, -1, H, K), dim=-1)
        v = self.v_proj(xt).view(B, -1, H, V)
        beta = torch.sigmoid(self.beta_proj(xt))                 # [B, L, H]
        g = F.logsigmoid(self.alpha_proj(xt))                    # log alpha, [B, L, H]
        if self.cfg.update_rule == "kairos":
            v, beta = kairos_to_gdn_inputs(v, g, beta)
        o, state = gated_delta_rule(q, k, v, g, beta, initial_state=state, backend=self.cfg.backend,
                                    chunk_size=self.cfg.chunk_size)
        o = self.o_norm(o) * F.silu(self.gate_proj(xt).view(B, -1, H, V))
        return self.o_proj(o.reshape(B, T, N, H * V)), state
