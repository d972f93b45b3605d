"""Causal video VAE: space x8 or x16, time x4, the first frame encoded alone.

    frames [B, T, 3, H, W] (T = 1 + 4k, values in [0, 1])  ->  latents [B, 1 + k, C_lat, H/s, W/s]

Layout of the encoder: a per-frame 2D CNN down to H/s, then a causal temporal convolution over the
frame axis, then time compression: latent 0 is frame 0 alone (so a single image is a valid clip),
latent j >= 1 packs frames 4j-3 .. 4j (their features concatenated, then projected). The decoder
mirrors it. Every temporal operation is causal: latent j depends on frames <= 4j, and frames of
group j are decoded from latents <= j; with the temporal-conv caches (`VAEStreamState`) a clip can be
encoded or decoded piece by piece with the same result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VideoVAEConfig:
    """in_channels: 3 (RGB). latent_channels: C_lat. base_channels: width of the first stage; it
    doubles at each 2x downsampling up to max_channels. spatial_down: 8 or 16. time_down: frames per
    latent after the first (4). kl_weight: weight of KL(q(z|x) || N(0, I)) in the training loss.
    l1_weight: weight of an L1 term beside the MSE (L1 pulls towards the per-pixel median, which on
    mostly-background frames is the background: it slows the learning of small objects).
    color_shortcut: a parameter-free path for the low frequencies (residual autoencoding, as in DC-AE,
    Chen et al. 2024): the encoder adds each frame's colour averaged over every s x s patch to latent
    channels 0-2 (averaged over the 4 frames a latent packs), and the decoder adds those channels back,
    upsampled bilinearly, so the networks learn only the residual. Without it a small VAE trained for
    minutes gets each image's colour cast wrong by a few percent, which PSNR charges to every pixel
    (measured in docs/results/curriculum.md, "A colour shortcut for the VAE").
    latent_norm: the VAE carries a per-channel latent mean and std (buffers, as Wan's VAE does):
    encode returns (mu - mean) / std and decode undoes it. Identity until `calibrate_latent_norm`
    sets them from data after training; with the colour shortcut, channels 0-2 hold colours far from
    zero mean and with their own spread, which one scalar latent scale cannot centre."""
    in_channels: int = 3
    latent_channels: int = 16
    base_channels: int = 32
    max_channels: int = 128
    spatial_down: int = 8
    time_down: int = 4
    temporal_kernel: int = 3
    kl_weight: float = 1e-6
    l1_weight: float = 0.0
    color_shortcut: bool = False
    latent_norm: bool = False

    def __post_init__(self):
        if self.spatial_down not in (8, 16):
            raise ValueError(f"spatial_down must be 8 or 16, got {self.spatial_down}")
        if self.time_down < 1:
            raise ValueError(f"time_down must be >= 1, got {self.time_down}")
        if self.color_shortcut and self.latent_channels < self.in_channels:
            raise ValueError(f"color_shortcut needs latent_channels >= in_channels ({self.in_channels}), "
                             f"got {self.latent_channels}")

    def latent_frames(self, frames: int) -> int:
        if frames < 1 or (frames - 1) % self.time_down:
            raise ValueError(f"a clip must have 1 + {self.time_down} * k frames, got {frames}")
        return 1 + (frames - 1) // self.time_down


class ResBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        h = self.c1(F.silu(self.n1(x)))
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class PixelNorm(nn.Module):
    """LayerNorm over channels at each pixel. GroupNorm in front of an output conv (with no skip
    around it) would subtract each image's spatial mean: a flat background colour would be lost."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.LayerNorm(c, eps=1e-6)

    def forward(self, x):                    # [B, C, H, W]
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class CausalTemporalConv(nn.Module):
    """Depthwise-separable conv over time, causal. x: [B, C, T, h, w]; cache: the last k-1 input
    frames [B, C, k-1, h, w] (None: zeros, the start of a clip)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.k = kernel
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x, cache: Optional[torch.Tensor] = None):
        if cache is None:
            cache = x.new_zeros(*x.shape[:2], self.k - 1, *x.shape[3:])
        xp = torch.cat([cache, x], dim=2)
        return x + self.conv(xp), xp[:, :, xp.shape[2] - (self.k - 1):]


def _stage_channels(cfg: VideoVAEConfig):
    n = int(math.log2(cfg.spatial_down))
    return [min(cfg.base_channels * 2 ** i, cfg.max_channels) for i in range(n + 1)]


@dataclass
class VAEStreamState:
    """Causal-conv caches for piecewise encode/decode, and whether the first frame was seen."""
    enc_cache: Optional[torch.Tensor] = None
    dec_cache: Optional[torch.Tensor] = None
    started_enc: bool = False
    started_dec: bool = False


class VideoVAE(nn.Module):
    """encode(frames_btchw) -> (mu, logvar) [B, T_lat, C_lat, h, w]; decode(z) -> frames_btchw."""

    def __init__(self, cfg: VideoVAEConfig = VideoVAEConfig()):
        super().__init__()
        self.cfg = cfg
        ch = _stage_channels(cfg)
        C, k = ch[-1], cfg.time_down
        # The first 2x is a pixel unshuffle (space to channels): full-resolution convolutions would
        # cost most of the compute and add little on the way down.
        enc = [nn.PixelUnshuffle(2), nn.Conv2d(4 * cfg.in_channels, ch[0], 3, padding=1)]
        for i, (a, b) in enumerate(zip(ch[:-1], ch[1:])):
            enc += [ResBlock2d(a, b)]
            if i < len(ch) - 2:
                enc += [nn.Conv2d(b, b, 3, stride=2, padding=1)]
        enc += [ResBlock2d(C, C)]
        self.enc2d = nn.Sequential(*enc)
        self.enc_t = CausalTemporalConv(C, cfg.temporal_kernel)
        self.enc_pack = nn.Conv2d(k * C, C, 1)                 # 4 frames -> 1 latent
        self.enc_first = nn.Conv2d(C, C, 1)                    # frame 0 alone
        self.enc_out = nn.Sequential(PixelNorm(C), nn.SiLU(), nn.Conv2d(C, 2 * cfg.latent_channels, 3, padding=1))
        with torch.no_grad():  # start with a small posterior std: unit noise would drown the latents
            self.enc_out[-1].bias[cfg.latent_channels:].fill_(-8.0)
        self.dec_in = nn.Conv2d(cfg.latent_channels, C, 3, padding=1)
        self.dec_first = nn.Conv2d(C, C, 1)
        self.dec_unpack = nn.Conv2d(C, k * C, 1)               # 1 latent -> 4 frames
        self.dec_t = CausalTemporalConv(C, cfg.temporal_kernel)
        dec = [ResBlock2d(C, C)]
        for i, (a, b) in enumerate(zip(ch[::-1][:-1], ch[::-1][1:])):
            if i > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest")]
            dec += [nn.Conv2d(a, b, 3, padding=1), ResBlock2d(b, b)]
        dec += [PixelNorm(ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 4 * cfg.in_channels, 3, padding=1),
                nn.PixelShuffle(2)]
        self.dec2d = nn.Sequential(*dec)
        if cfg.latent_norm:                                    # identity until calibrate_latent_norm
            self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
            self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    # --- latent normalisation -----------------------------------------------------------------
    LATENT_NORM_KEYS = ("latent_mean", "latent_std")

    @torch.no_grad()
    def calibrate_latent_norm(self, frames_btchw: torch.Tensor) -> None:
        """Set the per-channel latent mean / std (cfg.latent_norm) from the raw latents of these frames
        [B, T, 3, H, W]: afterwards encode() gives them zero mean and unit std per channel."""
        if not self.cfg.latent_norm:
            raise ValueError("this VAE has no latent normalisation (VideoVAEConfig.latent_norm=False)")
        self.latent_mean.zero_()
        self.latent_std.fill_(1.0)
        mu, _ = self.encode(frames_btchw)
        self.latent_mean.copy_(mu.mean(dim=(0, 1, 3, 4)))
        self.latent_std.copy_(mu.std(dim=(0, 1, 3, 4)).clamp_min(1e-3))

    def latent_norm_is_identity(self) -> bool:
        return bool(self.cfg.latent_norm and (self.latent_mean == 0).all() and (self.latent_std == 1).all())

    # --- shapes -------------------------------------------------------------------------------
    def latent_shape(self, frames: int, height: int, width: int) -> Tuple[int, int, int, int]:
        s = self.cfg.spatial_down
        if height % s or width % s:
            raise ValueError(f"frame size {height}x{width} must be divisible by {s}")
        return self.cfg.latent_frames(frames), self.cfg.latent_channels, height // s, width // s

    def _check_frames(self, x: torch.Tensor, first: bool):
        if x.dim() != 5 or x.shape[2] != self.cfg.in_channels:
            raise ValueError(f"frames must be [B, T, {self.cfg.in_channels}, H, W], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"frames must be floating point in [0, 1], got {x.dtype}")
        T = x.shape[1]
        if first and (T - 1) % self.cfg.time_down:
            raise ValueError(f"a clip must have 1 + {self.cfg.time_down} * k frames, got {T}")
        if not first and T % self.cfg.time_down:
            raise ValueError(f"a continuation must have a multiple of {self.cfg.time_down} frames, got {T}")

    # --- encoder ------------------------------------------------------------------------------
    def encode(self, frames_btchw: torch.Tensor, state: Optional[VAEStreamState] = None):
        """frames [B, T, 3, H, W] in [0, 1] -> (mu, logvar), each [B, T_lat, C_lat, H/s, W/s].

        With a state, the clip may come in pieces: the first piece 1 + 4k frames, the rest 4k each."""
        first = state is None or not state.started_enc
        self._check_frames(frames_btchw, first)
        B, T = frames_btchw.shape[:2]
        h = self.enc2d(frames_btchw.flatten(0, 1) * 2 - 1)            # [B*T, C, h, w]
        h = h.unflatten(0, (B, T)).transpose(1, 2)                    # [B, C, T, h, w]
        h, cache = self.enc_t(h, None if state is None else state.enc_cache)
        if state is not None:
            state.enc_cache, state.started_enc = cache, True
        h = h.transpose(1, 2)                                         # [B, T, C, h, w]
        lat = []
        if first:
            lat.append(self.enc_first(h[:, 0]).unsqueeze(1))
            h = h[:, 1:]
        if h.shape[1]:
            k = self.cfg.time_down
            g = h.unflatten(1, (h.shape[1] // k, k)).flatten(2, 3)    # [B, n, k*C, h, w]
            lat.append(self.enc_pack(g.flatten(0, 1)).unflatten(0, (B, g.shape[1])))
        z = torch.cat(lat, 1)
        out = self.enc_out(z.flatten(0, 1)).unflatten(0, z.shape[:2])
        mu, logvar = out.chunk(2, dim=2)
        if self.cfg.color_shortcut:
            c = self.cfg.in_channels
            mu = torch.cat([mu[:, :, :c] + self._patch_colors(frames_btchw, first), mu[:, :, c:]], 2)
        if self.cfg.latent_norm:
            shape = (1, 1, -1, 1, 1)
            mu = (mu - self.latent_mean.view(shape)) / self.latent_std.view(shape)
            logvar = logvar - 2 * self.latent_std.log().view(shape)
        return mu, logvar.clamp(-30, 20)

    def _patch_colors(self, frames_btchw: torch.Tensor, first: bool) -> torch.Tensor:
        """The colour shortcut's encoder side: frames [B, T, 3, H, W] in [0, 1] -> each frame's colour
        in [-1, 1] averaged over s x s patches, then over the frames each latent packs: [B, T_lat, 3, h, w]."""
        p = F.avg_pool2d(frames_btchw.flatten(0, 1) * 2 - 1, self.cfg.spatial_down)
        p = p.unflatten(0, frames_btchw.shape[:2])                     # [B, T, 3, h, w]
        parts = []
        if first:
            parts.append(p[:, :1])
            p = p[:, 1:]
        if p.shape[1]:
            k = self.cfg.time_down
            parts.append(p.unflatten(1, (p.shape[1] // k, k)).mean(2))
        return torch.cat(parts, 1)

    def _latent_colors(self, z: torch.Tensor, first: bool) -> torch.Tensor:
        """The colour shortcut's decoder side: latents [B, T_lat, C_lat, h, w] -> channels 0-2 repeated
        over the frames each latent decodes to and upsampled bilinearly: [B, T, 3, H, W] in [-1, 1]."""
        c = z[:, :, :self.cfg.in_channels]
        parts = []
        if first:
            parts.append(c[:, :1])
            c = c[:, 1:]
        if c.shape[1]:
            parts.append(c.repeat_interleave(self.cfg.time_down, 1))
        c = torch.cat(parts, 1)
        up = F.interpolate(c.flatten(0, 1), scale_factor=self.cfg.spatial_down, mode="bilinear",
                           align_corners=False)
        return up.unflatten(0, c.shape[:2])

    # --- decoder ------------------------------------------------------------------------------
    def decode(self, z: torch.Tensor, state: Optional[VAEStreamState] = None) -> torch.Tensor:
        """latents [B, T_lat, C_lat, h, w] -> frames [B, 1 + 4(T_lat-1), 3, H, W] (first piece) or
        [B, 4 T_lat, 3, H, W] (later pieces with a state). Output roughly in [0, 1]."""
        if z.dim() != 5 or z.shape[2] != self.cfg.latent_channels:
            raise ValueError(f"latents must be [B, T, {self.cfg.latent_channels}, h, w], got {tuple(z.shape)}")
        first = state is None or not state.started_dec
        if self.cfg.latent_norm:
            z = z * self.latent_std.view(1, 1, -1, 1, 1) + self.latent_mean.view(1, 1, -1, 1, 1)
        B, Tl = z.shape[:2]
        h = self.dec_in(z.flatten(0, 1)).unflatten(0, (B, Tl))
        frames = []
        if first:
            frames.append(self.dec_first(h[:, 0]).unsqueeze(1))
            h = h[:, 1:]
        if h.shape[1]:
            k = self.cfg.time_down
            u = self.dec_unpack(h.flatten(0, 1)).unflatten(0, (B, h.shape[1]))   # [B, n, k*C, h, w]
            frames.append(u.unflatten(2, (k, -1)).flatten(1, 2))                # [B, n*k, C, h, w]
        f = torch.cat(frames, 1).transpose(1, 2)
        f, cache = self.dec_t(f, None if state is None else state.dec_cache)
        if state is not None:
            state.dec_cache, state.started_dec = cache, True
        f = f.transpose(1, 2)
        out = self.dec2d(f.flatten(0, 1)).unflatten(0, f.shape[:2])
        if self.cfg.color_shortcut:
            out = out + self._latent_colors(z, first)
        return (out + 1) / 2

    # --- training -----------------------------------------------------------------------------
    def forward(self, frames_btchw: torch.Tensor, generator: Optional[torch.Generator] = None):
        """Returns (reconstruction, mu, logvar) with a reparameterised sample."""
        mu, logvar = self.encode(frames_btchw)
        # noise is drawn where the generator lives (seeded CPU generators give the same draw on any device)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype,
                          device=generator.device if generator is not None else mu.device).to(mu.device)
        z = mu + eps * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar

    def loss(self, frames_btchw: torch.Tensor, generator: Optional[torch.Generator] = None):
        """MSE (+ l1_weight * L1) reconstruction + kl_weight * KL. Returns (loss, dict of parts)."""
        return self.loss_from(frames_btchw, *self(frames_btchw, generator))

    def loss_from(self, frames_btchw, rec, mu, logvar):
        """The loss of `loss` from an existing forward pass (a DDP-wrapped forward, for one)."""
        l1 = (rec - frames_btchw).abs().mean()
        mse = (rec - frames_btchw).pow(2).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = self.cfg.l1_weight * l1 + mse + self.cfg.kl_weight * kl
        return loss, {"l1": l1.detach(), "mse": mse.detach(), "kl": kl.detach()}


VAE_PRESETS = {
    "tiny": VideoVAEConfig(latent_channels=16, base_channels=16, max_channels=64, spatial_down=8),
    # tiny with the colour shortcut: ~5 dB sharper after the same minutes of training (curriculum.md)
    "tiny_shortcut": VideoVAEConfig(latent_channels=16, base_channels=16, max_channels=64, spatial_down=8,
                                    color_shortcut=True, latent_norm=True),
    "small": VideoVAEConfig(latent_channels=16, base_channels=32, max_channels=256, spatial_down=8),
    # Wan2.2-style high compression (16 x 16 x 4, 48 channels), the paper's "high-compression VAE".
    "kairos_4b": VideoVAEConfig(latent_channels=48, base_channels=128, max_channels=512, spatial_down=16),
}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))
