"""World generation on its own (the paper's TI2V): an image and a prompt in, a video out.

The video DiT is rolled forward chunk by chunk: it predicts the next F latent frames from the
streaming context, those frames are fed back into the memory as observations, and so on. The
memory state is fixed-size, so a clip can be far longer than any training clip at a cost per frame
that does not grow (bench/generate_scaling.py measures it). Latents are decoded with the VAE's
causal streaming decoder as they come.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional

import torch

from kairos_model.understanding import UnderstandingEncoder
from kairos_model.vae import VAEStreamState, VideoVAE
from kairos_model.world_model import KairosWorldModel


@dataclass
class GenerateConfig:
    """frames: video frames wanted (>= 1). steps: sampler steps per chunk. cfg_scale: guidance on
    the prompt (1 = none). seed: noise seed."""
    frames: int = 33
    steps: int = 10
    cfg_scale: float = 1.0
    seed: int = 0


class WorldGenerator:
    """Holds the three models and produces frames [3, H, W] in [0, 1], one latent chunk at a time."""

    def __init__(self, model: KairosWorldModel, vae: VideoVAE, und: UnderstandingEncoder):
        if model.cfg.latent_channels != vae.cfg.latent_channels:
            raise ValueError(f"world model expects {model.cfg.latent_channels} latent channels, "
                             f"the VAE makes {vae.cfg.latent_channels}")
        self.model, self.vae, self.und = model.eval(), vae.eval(), und.eval()

    def latent_frames_needed(self, frames: int) -> int:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        k = self.vae.cfg.time_down
        return 1 + -(-(frames - 1) // k)

    @torch.no_grad()
    def stream(self, image_chw: torch.Tensor, prompt: str, cfg: GenerateConfig,
               on_latent: Optional[Callable[[int], None]] = None) -> Iterator[torch.Tensor]:
        """Yield decoded frames [3, H, W], in order, until cfg.frames have been produced."""
        if image_chw.dim() != 3 or image_chw.shape[0] != 3 or not image_chw.is_floating_point():
            raise ValueError(f"image must be a float [3, H, W] tensor in [0, 1], got "
                             f"{tuple(image_chw.shape)} {image_chw.dtype}")
        m = self.model
        h, w = m.cfg.latent_hw
        s = self.vae.cfg.spatial_down
        if image_chw.shape[1:] != (h * s, w * s):
            raise ValueError(f"image must be {h * s}x{w * s} for this model, got "
                             f"{image_chw.shape[1]}x{image_chw.shape[2]}")
        gen = torch.Generator().manual_seed(cfg.seed)
        img = image_chw.unsqueeze(0)
        z, _ = self.vae.encode(img.unsqueeze(1))                          # [1, 1, C, h, w]
        und = self.und([prompt], img).unsqueeze(1)                        # [1, 1, M, C]
        proprio = z.new_zeros(1, 1, m.cfg.proprio_dim)                    # no robot in a generated video
        state = m.init_state(1, dtype=z.dtype)
        dec_state = VAEStreamState()
        ctx, state = m.encode_context(z, proprio, und, state)
        produced, latents = 0, 1
        for f in self.vae.decode(z, dec_state)[0]:                        # the first frame
            produced += 1
            yield f
        need = self.latent_frames_needed(cfg.frames)
        while latents < need:
            fut, _ = m.sample(ctx, torch.tensor([0]), steps=cfg.steps, with_actions=False,
                              cfg_scale=cfg.cfg_scale, generator=gen)          # [1, 1, F, C, h, w]
            for zf in fut[0, 0]:
                if latents >= need:
                    break
                zf = zf[None, None]
                ctx, state = m.encode_context(zf, proprio, und, state)       # fed back as observed
                latents += 1
                if on_latent:
                    on_latent(latents)
                for frame in self.vae.decode(zf, dec_state)[0]:
                    if produced >= cfg.frames:
                        return
                    produced += 1
                    yield frame

    def generate(self, image_chw, prompt, cfg: GenerateConfig) -> torch.Tensor:
        """All frames at once: [cfg.frames, 3, H, W] in [0, 1]."""
        return torch.stack(list(self.stream(image_chw, prompt, cfg))).clamp(0, 1)
