"""The Kairos world model: a Mixture-of-Transformers video DiT + Action DiT over the hybrid memory.

Token groups (the "modalities" of the MoT; each has its own norms, projections and FFN, and all
share one attention):

    und   understanding tokens of the current frame (instruction + image)      [B, M, C]
    obs   the observed latent frame: N_v video tokens + 1 proprio token       [B, N, C], N = N_v + 1
    fut   noisy future latent frames, F of them                                [B, F * N_v, C]
    act   noisy action chunk, H steps                                          [B, H, C]

Weights per modality: 'video' (obs video tokens and fut), 'robot' (proprio token and act), 'und'.

The unified attention mask, the one place it is defined (`joint_mask`):

    query \\ key     und_t   obs_t   obs_<t   fut   act
    und_t           yes     -       -        -     -
    obs_t           yes     yes     memory   -     -
    fut, act        yes*    yes     via obs  yes   yes       (* text keys hidden when unconditional)

`obs_<t` is reached only through the temporal mixer of each block (SWA / DSWA / GatedDeltaNet over
the observation stream, `kairos_model.memory`), so the observed stream never sees noisy
predictions, nothing sees a later real observation, and the context of a control step (memory
update, obs and und keys/values of every layer) is computed once and reused by every sampler step.

    model = KairosWorldModel(WorldModelConfig.preset("tiny"))
    ctx, state = model.encode_context(obs_latents, proprio, und_tokens, state)   # once per control step
    v_fut, v_act = model.velocity(ctx, anchors, fut_noisy, act_noisy, sigma)     # per sampler step
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from kairos_model import flow
from kairos_model.memory.attention import FrameAttention
from kairos_model.memory.gated_deltanet import GatedDeltaNet
from kairos_model.memory.hybrid import HybridMemoryConfig, HybridState, SwiGLU, init_mixer_state
from kairos_model.understanding import UnderstandingConfig
from kairos_model.vae import VAE_PRESETS, VideoVAEConfig


@dataclass
class WorldModelConfig:
    """memory: width, heads and the per-layer temporal mixer pattern (depth = len(pattern)).
    latent_channels, latent_hw: the VAE latent a frame becomes; patch: latent pixels per token side.
    future_frames: F latent frames predicted. action_dim, action_horizon: H x A action chunk.
    proprio_dim: joint-state size. und: understanding encoder (its dim is forced to memory.dim).
    mlp_ratio: FFN hidden / width. shift: the shape-aware timestep shift. video_weight and
    action_weight: loss weights. text_dropout: training probability of hiding the instruction (CFG).
    vae: the VAE preset the model works with."""
    memory: HybridMemoryConfig = field(default_factory=lambda: HybridMemoryConfig(dim=128, heads=4, head_dim=32))
    latent_channels: int = 16
    latent_hw: Tuple[int, int] = (8, 8)
    patch: int = 2
    future_frames: int = 2
    action_dim: int = 7
    action_horizon: int = 8
    proprio_dim: int = 7
    und: UnderstandingConfig = field(default_factory=UnderstandingConfig)
    mlp_ratio: float = 3.0
    shift: flow.ShiftConfig = field(default_factory=flow.ShiftConfig)
    video_weight: float = 1.0
    action_weight: float = 1.0
    text_dropout: float = 0.1
    vae: str = "tiny"

    def __post_init__(self):
        self.latent_hw = tuple(self.latent_hw)
        h, w = self.latent_hw
        if h % self.patch or w % self.patch:
            raise ValueError(f"latent size {h}x{w} is not divisible by patch {self.patch}")
        if self.memory.dim < self.latent_channels * self.patch ** 2:
            raise ValueError(f"width {self.memory.dim} is narrower than a video token "
                             f"({self.latent_channels} x {self.patch}^2 = {self.latent_channels * self.patch ** 2} "
                             "values): the model could not carry its own input; widen it or use a smaller patch")
        if self.vae not in VAE_PRESETS:
            raise ValueError(f"unknown VAE preset {self.vae!r}; expected one of {sorted(VAE_PRESETS)}")
        if VAE_PRESETS[self.vae].latent_channels != self.latent_channels:
            raise ValueError(f"latent_channels {self.latent_channels} does not match VAE '{self.vae}' "
                             f"({VAE_PRESETS[self.vae].latent_channels})")
        self.und = replace(self.und, dim=self.memory.dim)

    @property
    def dim(self) -> int:
        return self.memory.dim

    @property
    def video_tokens(self) -> int:
        """N_v: tokens per latent frame."""
        return (self.latent_hw[0] // self.patch) * (self.latent_hw[1] // self.patch)

    @property
    def obs_tokens(self) -> int:
        """N: tokens per observed frame in the memory stream (video tokens + 1 proprio token)."""
        return self.video_tokens + 1

    @property
    def vae_config(self) -> VideoVAEConfig:
        return VAE_PRESETS[self.vae]

    @classmethod
    def preset(cls, name: str, **overrides) -> "WorldModelConfig":
        if name not in WORLD_MODEL_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(WORLD_MODEL_PRESETS)}")
        return replace(WORLD_MODEL_PRESETS[name](), **overrides)


def _preset_tiny():
    return WorldModelConfig()


def _preset_small():
    return WorldModelConfig(memory=HybridMemoryConfig(dim=384, heads=6, head_dim=64,
                                                      pattern=("swa", "dswa6", "gdn", "swa", "dswa12", "gdn") * 2),
                            vae="small", future_frames=4, action_horizon=16,
                            und=UnderstandingConfig(text_layers=4, text_tokens=8, image_tokens=8, image_channels=64))


def _preset_kairos_4b():
    # 704 x 1280 (720p cropped to a multiple of 32) through the 16x16x4 VAE: 44 x 80 latents,
    # 2x2 patches -> 880 tokens per latent frame. 32 MoT blocks of width 1536.
    return WorldModelConfig(memory=HybridMemoryConfig(dim=1536, heads=12, head_dim=128,
                                                      pattern=("swa", "swa", "dswa6", "gdn",
                                                               "swa", "swa", "dswa12", "gdn") * 4),
                            latent_channels=48, latent_hw=(44, 80), patch=2, vae="kairos_4b",
                            future_frames=5, action_horizon=32, action_dim=14, proprio_dim=14, mlp_ratio=2.75,
                            und=UnderstandingConfig(text_layers=4, text_tokens=32, image_tokens=16,
                                                    image_channels=128, text_heads=12))


WORLD_MODEL_PRESETS = {"tiny": _preset_tiny, "small": _preset_small, "kairos_4b": _preset_kairos_4b}

MODALITIES = ("video", "robot", "und")


class TimestepEmbedder(nn.Module):
    """sigma in [0, 1] -> [B, C] (sinusoidal features of 1000 * sigma, then an MLP), as in DiT."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
        a = 1000 * sigma.float().unsqueeze(-1) * freqs
        return self.mlp(torch.cat([a.cos(), a.sin()], -1).to(self.mlp[0].weight.dtype))


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class ModalityParts(nn.Module):
    """One modality's weights in a block: norms, qkv, out, FFN, and adaLN modulation (if timed)."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float, timed: bool):
        super().__init__()
        inner = heads * head_dim
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=not timed, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=not timed, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.q_norm, self.k_norm = nn.RMSNorm(head_dim), nn.RMSNorm(head_dim)
        self.out = nn.Linear(inner, dim, bias=False)
        self.ffn = SwiGLU(dim, int(dim * mlp_ratio))
        self.ada = nn.Linear(dim, 6 * dim) if timed else None
        if timed:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)

    def mods(self, t_emb: Optional[torch.Tensor]):
        """(shift1, scale1, gate1, shift2, scale2, gate2), each [B, 1, C] (or None without adaLN)."""
        if self.ada is None:
            return None
        return self.ada(F.silu(t_emb)).unsqueeze(1).chunk(6, dim=-1)


@dataclass
class LayerContext:
    """What the prediction tokens of one layer read: keys/values of und and obs tokens, per frame.
    k, v: [B, T, M + N, H, D]."""
    k: torch.Tensor
    v: torch.Tensor


@dataclass
class Context:
    """Output of encode_context: per-layer LayerContext, the number of und tokens M, the text-token
    count inside them, and the final obs features [B, T, N, C]."""
    layers: List[LayerContext]
    und_tokens: int
    text_tokens: int
    obs: torch.Tensor


def joint_mask(n_und: int, n_text: int, n_obs: int, n_pred: int, hide_text: Optional[torch.Tensor] = None,
               device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The unified attention mask within one frame (see the module docstring).

    Returns (ctx_mask [M + N, M + N] for und/obs queries over und/obs keys,
             pred_mask [B or 1, 1, P, M + N + P] for fut/act queries over und, obs and pred keys).
    hide_text [B] bool: samples whose prediction tokens must not see the first n_text und tokens (CFG).
    """
    M, N, P = n_und, n_obs, n_pred
    ctx = torch.zeros(M + N, M + N, dtype=torch.bool, device=device)
    ctx[:M, :M] = True                                   # und sees und
    ctx[M:, :] = True                                    # obs sees und and obs (its own frame)
    pred = torch.ones(1, 1, P, M + N + P, dtype=torch.bool, device=device)
    if hide_text is not None:       # written with broadcasting (no masked assignment) so it exports
        text_cols = torch.arange(M + N + P, device=device) < n_text                 # [M + N + P]
        pred = ~(hide_text.to(device).view(-1, 1, 1, 1) & text_cols.view(1, 1, 1, -1))
        pred = pred.expand(-1, 1, P, M + N + P)
    return ctx, pred


class MoTBlock(nn.Module):
    """Temporal mixer on the obs stream, then shared attention and per-modality FFN for all groups."""

    def __init__(self, cfg: WorldModelConfig, entry: str):
        super().__init__()
        m = cfg.memory
        self.cfg, self.entry = cfg, entry
        mcfg = m.mixer_config(entry)
        self.temporal = GatedDeltaNet(mcfg) if entry == "gdn" else FrameAttention(mcfg)
        self.t_norm = nn.RMSNorm(m.dim)
        self.heads, self.head_dim = m.heads, m.head_dim
        self.parts = nn.ModuleDict({
            "video": ModalityParts(m.dim, m.heads, m.head_dim, cfg.mlp_ratio, timed=True),
            "robot": ModalityParts(m.dim, m.heads, m.head_dim, cfg.mlp_ratio, timed=True),
            "und": ModalityParts(m.dim, m.heads, m.head_dim, cfg.mlp_ratio, timed=False)})

    # -- helpers ---------------------------------------------------------------------------------
    def _qkv(self, part: ModalityParts, x, mods):
        h = part.norm1(x)
        if mods is not None:
            h = modulate(h, mods[0], mods[1])
        q, k, v = part.qkv(h).unflatten(-1, (3, self.heads, self.head_dim)).unbind(-3)
        return part.q_norm(q), part.k_norm(k), v

    def _finish(self, part: ModalityParts, x, attn_out, mods):
        o = part.out(attn_out.flatten(-2))
        x = x + (o if mods is None else mods[2] * o)
        h = part.norm2(x)
        if mods is not None:
            h = modulate(h, mods[3], mods[4])
        f = part.ffn(h)
        return x + (f if mods is None else mods[5] * f)

    # -- context (observations and understanding), once per frame --------------------------------
    def context(self, und, obs, t0_emb, state):
        """und: [B, T, M, C], obs: [B, T, N, C] -> (und, obs, LayerContext, new temporal state)."""
        B, T, M, C = und.shape
        N = obs.shape[2]
        h, state = self.temporal(self.t_norm(obs), state)
        obs = obs + h
        pv, pr, pu = self.parts["video"], self.parts["robot"], self.parts["und"]
        mv, mr = pv.mods(t0_emb), pr.mods(t0_emb)
        mv = None if mv is None else [m.unsqueeze(1) for m in mv]          # [B, 1, 1, C] over (T, N)
        mr = None if mr is None else [m.unsqueeze(1) for m in mr]
        qu, ku, vu = self._qkv(pu, und, None)
        qv, kv_, vv = self._qkv(pv, obs[:, :, :-1], mv)
        qr, kr, vr = self._qkv(pr, obs[:, :, -1:], mr)
        q = torch.cat([qu, qv, qr], 2).flatten(0, 1)                         # [B*T, M+N, H, D]
        k = torch.cat([ku, kv_, kr], 2)
        v = torch.cat([vu, vv, vr], 2)
        ctx_mask, _ = joint_mask(M, 0, N, 0, device=obs.device)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.flatten(0, 1).transpose(1, 2),
                                           v.flatten(0, 1).transpose(1, 2), attn_mask=ctx_mask)
        o = o.transpose(1, 2).unflatten(0, (B, T))                           # [B, T, M+N, H, D]
        und = self._finish(pu, und, o[:, :, :M], None)
        obs_v = self._finish(pv, obs[:, :, :-1], o[:, :, M:M + N - 1], mv)
        obs_r = self._finish(pr, obs[:, :, -1:], o[:, :, M + N - 1:], mr)
        return und, torch.cat([obs_v, obs_r], 2), LayerContext(k, v), state

    # -- prediction tokens, every sampler step ---------------------------------------------------
    def predict(self, fut, act, t_emb, lctx_k, lctx_v, pred_mask):
        """fut: [G, Pf, C], act: [G, H, C] (H may be 0), ctx k/v: [G, M+N, H, D] -> (fut, act)."""
        pv, pr = self.parts["video"], self.parts["robot"]
        mv, mr = pv.mods(t_emb), pr.mods(t_emb)
        qf, kf, vf = self._qkv(pv, fut, mv)
        qa, ka, va = self._qkv(pr, act, mr)
        q = torch.cat([qf, qa], 1)
        k = torch.cat([lctx_k, kf, ka], 1)
        v = torch.cat([lctx_v, vf, va], 1)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=pred_mask).transpose(1, 2)
        Pf = fut.shape[1]
        return self._finish(pv, fut, o[:, :Pf], mv), self._finish(pr, act, o[:, Pf:], mr)


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(dim, 2 * dim)
        self.lin = nn.Linear(dim, out)
        for m in (self.ada, self.lin):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x, t_emb):
        shift, scale = self.ada(F.silu(t_emb)).unsqueeze(1).chunk(2, -1)
        return self.lin(modulate(self.norm(x), shift, scale))


class KairosWorldModel(nn.Module):
    """Joint video + action flow model over a streamed observation memory. Shapes:

    obs_latents [B, T, C_lat, h, w], proprio [B, T, J], und_tokens [B, T, M, C]
    fut (noisy) [B, P, F, C_lat, h, w], act (noisy) [B, P, H, A], sigma [B, P]; anchors [P] frame indices
    """

    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.cfg = cfg
        C, p, c = cfg.dim, cfg.patch, cfg.latent_channels
        self.video_in = nn.Linear(c * p * p, C)
        self.spatial_pos = nn.Parameter(torch.randn(cfg.video_tokens, C) * 0.02)
        self.future_pos = nn.Parameter(torch.randn(cfg.future_frames, C) * 0.02)
        self.proprio_in = nn.Linear(cfg.proprio_dim, C)
        self.act_in = nn.Linear(cfg.action_dim, C)
        self.act_pos = nn.Parameter(torch.randn(cfg.action_horizon, C) * 0.02)
        self.t_embed = TimestepEmbedder(C)
        self.blocks = nn.ModuleList(MoTBlock(cfg, e) for e in cfg.memory.pattern)
        self.video_out = FinalLayer(C, c * p * p)
        self.act_out = FinalLayer(C, cfg.action_dim)

    # -- shapes ----------------------------------------------------------------------------------
    def patchify(self, z):
        """[..., C_lat, h, w] -> [..., N_v, C_lat * p * p], tokens in raster order of patches."""
        p = self.cfg.patch
        *lead, c, h, w = z.shape
        z = z.reshape(-1, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)   # [L, h/p, w/p, c, p, p]
        return z.reshape(*lead, (h // p) * (w // p), c * p * p)

    def unpatchify(self, tokens):
        """[..., N_v, C_lat * p * p] -> [..., C_lat, h, w]."""
        p, c = self.cfg.patch, self.cfg.latent_channels
        h, w = self.cfg.latent_hw
        *lead, n, _ = tokens.shape
        z = tokens.reshape(-1, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)  # [L, c, h/p, p, w/p, p]
        return z.reshape(*lead, c, h, w)

    def _check(self, name, x, shape):
        if x.dim() != len(shape) or any(s is not None and a != s for a, s in zip(x.shape, shape)):
            want = ", ".join("?" if s is None else str(s) for s in shape)
            raise ValueError(f"{name} must be [{want}], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {x.dtype}")

    def init_state(self, batch: int, device=None, dtype=None) -> HybridState:
        return HybridState([init_mixer_state(b.temporal, batch, self.cfg.obs_tokens, device, dtype)
                            for b in self.blocks])

    # -- context ---------------------------------------------------------------------------------
    def encode_context(self, obs_latents, proprio, und_tokens, state: Optional[HybridState] = None
                       ) -> Tuple[Context, Optional[HybridState]]:
        """Run the observation stream (memory update) and the understanding tokens through every block.

        state=None: training form over all T frames; a HybridState: streaming, T frames appended."""
        cfg = self.cfg
        h, w = cfg.latent_hw
        self._check("obs_latents", obs_latents, (None, None, cfg.latent_channels, h, w))
        B, T = obs_latents.shape[:2]
        self._check("proprio", proprio, (B, T, cfg.proprio_dim))
        self._check("und_tokens", und_tokens, (B, T, None, cfg.dim))
        if state is not None and (not isinstance(state, HybridState) or len(state.layers) != len(self.blocks)):
            raise ValueError(f"state must be a HybridState with {len(self.blocks)} layers (from init_state)")
        obs = torch.cat([self.video_in(self.patchify(obs_latents)) + self.spatial_pos,
                         self.proprio_in(proprio).unsqueeze(2)], dim=2)                  # [B, T, N, C]
        t0 = self.t_embed(torch.zeros(B, device=obs.device))
        und = und_tokens
        layers, new_state = [], []
        for i, blk in enumerate(self.blocks):
            und, obs, lctx, s = blk.context(und, obs, t0, None if state is None else state.layers[i])
            layers.append(lctx)
            new_state.append(s)
        ctx = Context(layers, und_tokens.shape[2], cfg.und.text_tokens, obs)
        return ctx, (None if state is None else HybridState(new_state))

    # -- prediction ------------------------------------------------------------------------------
    def velocity(self, ctx: Context, anchors: torch.Tensor, fut, act, sigma, hide_text=None):
        """Velocities for the prediction tokens anchored at frames `anchors` [P] of the context.

        fut: [B, P, F, C_lat, h, w]; act: [B, P, H, A] or None (video only); sigma: [B, P];
        hide_text: [B, P] bool or None. Returns (v_fut like fut, v_act like act or None)."""
        cfg = self.cfg
        B, P = sigma.shape
        if fut.shape[:3] != (B, P, cfg.future_frames):
            raise ValueError(f"fut must be [B, P, F={cfg.future_frames}, C, h, w] with B, P = {B, P}, "
                             f"got {tuple(fut.shape)}")
        if act is not None and act.shape != (B, P, cfg.action_horizon, cfg.action_dim):
            raise ValueError(f"act must be [B, P, H, A] = {(B, P, cfg.action_horizon, cfg.action_dim)}, "
                             f"got {tuple(act.shape)}")
        G = B * P
        t_emb = self.t_embed(sigma.reshape(G))
        f_tok = self.video_in(self.patchify(fut))                                    # [B, P, F, N_v, C]
        f_tok = (f_tok + self.spatial_pos + self.future_pos[:, None]).reshape(G, -1, cfg.dim)
        if act is not None:
            a_tok = (self.act_in(act) + self.act_pos).reshape(G, cfg.action_horizon, cfg.dim)
        else:
            a_tok = f_tok.new_zeros(G, 0, cfg.dim)
        _, pred_mask = joint_mask(ctx.und_tokens, ctx.text_tokens, cfg.obs_tokens,
                                  f_tok.shape[1] + a_tok.shape[1],
                                  None if hide_text is None else hide_text.reshape(G), device=f_tok.device)
        for blk, lctx in zip(self.blocks, ctx.layers):
            k = lctx.k[:, anchors].flatten(0, 1)                                     # [G, M+N, H, D]
            v = lctx.v[:, anchors].flatten(0, 1)
            f_tok, a_tok = blk.predict(f_tok, a_tok, t_emb, k, v, pred_mask)
        v_fut = self.unpatchify(self.video_out(f_tok, t_emb).reshape(B, P, cfg.future_frames,
                                                                      cfg.video_tokens, -1))
        v_act = None
        if act is not None:
            v_act = self.act_out(a_tok, t_emb).reshape(B, P, cfg.action_horizon, cfg.action_dim)
        return v_fut, v_act

    # -- training --------------------------------------------------------------------------------
    def shift_factor(self) -> float:
        return flow.shape_shift_factor(self.cfg.video_tokens, self.cfg.future_frames, self.cfg.shift)

    def loss(self, latents, proprio, und_tokens, actions=None, anchors: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None, hide_text: Optional[torch.Tensor] = None):
        """Joint flow-matching loss on a clip.

        latents [B, T, C, h, w] (clean), proprio [B, T, J], und_tokens [B, T, M, C],
        actions [B, T, H, A] (the chunk starting at each frame) or None for video-only stages.
        anchors [P]: frames to predict from (default: every frame with F future frames after it).
        Returns (loss, parts dict)."""
        cfg = self.cfg
        B, T = latents.shape[:2]
        Fh = cfg.future_frames
        if T < Fh + 1:
            raise ValueError(f"a clip needs at least future_frames + 1 = {Fh + 1} latent frames, got {T}")
        if anchors is None:
            anchors = torch.arange(T - Fh, device=latents.device)
        P = anchors.shape[0]
        ctx, _ = self.encode_context(latents, proprio, und_tokens)
        idx = anchors[:, None] + 1 + torch.arange(Fh, device=latents.device)          # [P, F]
        z0_fut = latents[:, idx]                                                       # [B, P, F, C, h, w]
        dev = latents.device
        sigma = flow.sample_training_sigma(B * P, self.shift_factor(), generator).to(dev).reshape(B, P)
        eps_f = torch.randn(z0_fut.shape, generator=generator).to(dev, latents.dtype)
        zf = flow.interpolate(z0_fut.flatten(0, 1), eps_f.flatten(0, 1), sigma.flatten()).unflatten(0, (B, P))
        za, a0, eps_a = None, None, None
        if actions is not None:
            a0 = actions[:, anchors]                                                   # [B, P, H, A]
            eps_a = torch.randn(a0.shape, generator=generator).to(dev, a0.dtype)
            za = flow.interpolate(a0.flatten(0, 1), eps_a.flatten(0, 1), sigma.flatten()).unflatten(0, (B, P))
        if hide_text is None and self.training and cfg.text_dropout > 0:
            hide_text = torch.rand(B, P, generator=generator).to(dev) < cfg.text_dropout
        v_fut, v_act = self.velocity(ctx, anchors, zf, za, sigma, hide_text)
        lv = flow.flow_matching_loss(v_fut, z0_fut, eps_f)
        parts = {"video": lv.detach()}
        loss = cfg.video_weight * lv
        if actions is not None:
            la = flow.flow_matching_loss(v_act, a0, eps_a)
            parts["action"] = la.detach()
            loss = loss + cfg.action_weight * la
        return loss, parts

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, ctx: Context, anchors: torch.Tensor, steps: int = 10, with_actions: bool = True,
               cfg_scale: float = 1.0, generator: Optional[torch.Generator] = None,
               action_prefix: Optional[torch.Tensor] = None, velocity_fn=None):
        """Euler-sample future latents [B, P, F, C, h, w] and actions [B, P, H, A] (or None) from noise,
        with `steps` steps of the shifted schedule and classifier-free guidance on the instruction.

        action_prefix [B, P, d, A] (d < H): the first d actions are known (real-time chunking); they
        are inpainted: after every step they are reset to the noisy version of the prefix at the
        current noise level, so the rest of the chunk is generated consistent with them.
        velocity_fn: a stand-in for self.velocity with its signature (e.g. kairos_model.cuda_graph's
        GraphedVelocity); the Euler loop around it is the same."""
        cfg = self.cfg
        velocity = velocity_fn or self.velocity
        B, P = ctx.obs.shape[0], anchors.shape[0]
        dev, dt = ctx.obs.device, ctx.obs.dtype
        h, w = cfg.latent_hw
        fut = torch.randn(B, P, cfg.future_frames, cfg.latent_channels, h, w, generator=generator).to(dev, dt)
        act = (torch.randn(B, P, cfg.action_horizon, cfg.action_dim, generator=generator).to(dev, dt)
               if with_actions else None)
        sigmas = flow.sigma_schedule(steps, self.shift_factor()).to(dev)
        d = 0 if (action_prefix is None or act is None) else action_prefix.shape[2]
        if d:
            if d >= cfg.action_horizon or action_prefix.shape[-1] != cfg.action_dim:
                raise ValueError(f"action_prefix must be [B, P, d < {cfg.action_horizon}, {cfg.action_dim}], "
                                 f"got {tuple(action_prefix.shape)}")
            prefix = action_prefix.to(dev, dt)
            eps_prefix = act[:, :, :d].clone()
            act[:, :, :d] = flow.interpolate(prefix, eps_prefix, sigmas[0].to(dt))
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            sig = s.expand(B, P).to(dt)
            vf, va = velocity(ctx, anchors, fut, act, sig)
            if cfg_scale != 1.0:
                hide = torch.ones(B, P, dtype=torch.bool, device=dev)
                uf, ua = velocity(ctx, anchors, fut, act, sig, hide)
                vf = flow.cfg_velocity(vf, uf, cfg_scale)
                va = None if va is None else flow.cfg_velocity(va, ua, cfg_scale)
            fut = fut + (s_next - s).to(dt) * vf
            if act is not None:
                act = act + (s_next - s).to(dt) * va
                if d:
                    act[:, :, :d] = flow.interpolate(prefix, eps_prefix, s_next.to(dt))
        return fut, act


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
