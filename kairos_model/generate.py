"""World generation on its own (the paper's TI2V): an image and a prompt in, a video out.

The video DiT is rolled forward chunk by chunk: it predicts the next F latent frames from the
streaming context, those frames are fed back into the memory as observations, and so on. The
memory state is fixed-size, so a clip can be far longer than any training clip at a cost per frame
that does not grow (bench/generate_scaling.py measures it).

Frames are handled as the model is trained and deployed (training.trainer.WorldModelTrainable,
kairos_model.engine.TorchEngine): one latent per frame, each frame encoded and decoded alone by the
VAE, latents scaled by the checkpoint's latent_scale, and each frame's understanding tokens made
from that frame (the prompt's text tokens with the frame's image tokens; a generated frame's image
tokens come from its decoded pixels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from kairos_model.understanding import UnderstandingEncoder
from kairos_model.vae import VideoVAE
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
    """Holds the three models and produces frames [3, H, W] in [0, 1], one latent chunk at a time.
    latent_scale: the checkpoint's (meta.latent_scale): the world model works on VAE latents times it."""

    def __init__(self, model: KairosWorldModel, vae: VideoVAE, und: UnderstandingEncoder,
                 latent_scale: float = 1.0):
        if model.cfg.latent_channels != vae.cfg.latent_channels:
            raise ValueError(f"world model expects {model.cfg.latent_channels} latent channels, "
                             f"the VAE makes {vae.cfg.latent_channels}")
        self.model, self.vae, self.und = model.eval(), vae.eval(), und.eval()
        self.latent_scale = float(latent_scale)

    def latent_frames_needed(self, frames: int) -> int:
        """One latent per frame (the world model's frames are the VAE's single frames)."""
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        return frames

    def _und(self, image_1chw: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """One frame [1, 3, H, W] -> its understanding tokens [1, 1, M, C] (the prompt's with its image's)."""
        return self.und.combine(text_tokens, self.und.encode_image(image_1chw)).unsqueeze(1)

    def _decode(self, z_1chw: torch.Tensor) -> torch.Tensor:
        """One scaled latent [1, C, h, w] -> its frame [3, H, W] in [0, 1]."""
        return self.vae.decode((z_1chw / self.latent_scale).unsqueeze(1))[0, 0].clamp(0, 1)

    @torch.no_grad()
    def stream(self, image_chw: torch.Tensor, prompt: str, cfg: GenerateConfig) -> Iterator[torch.Tensor]:
        """Yield frames [3, H, W], in order, until cfg.frames have been produced: the first is the VAE's
        reconstruction of the image, every other one a predicted latent decoded."""
        if image_chw.dim() != 3 or image_chw.shape[0] != 3 or not image_chw.is_floating_point():
            raise ValueError(f"image must be a float [3, H, W] tensor in [0, 1], got "
                             f"{tuple(image_chw.shape)} {image_chw.dtype}")
        m = self.model
        h, w = m.cfg.latent_hw
        s = self.vae.cfg.spatial_down
        if image_chw.shape[1:] != (h * s, w * s):
            raise ValueError(f"image must be {h * s}x{w * s} for this model, got "
                             f"{image_chw.shape[1]}x{image_chw.shape[2]}")
        need = self.latent_frames_needed(cfg.frames)
        gen = torch.Generator().manual_seed(cfg.seed)
        text = self.und.encode_text([prompt])                              # [1, Mt, C]
        img = image_chw.unsqueeze(0)
        z = self.vae.encode(img.unsqueeze(1))[0] * self.latent_scale       # [1, 1, C, h, w]
        und = self._und(img, text)
        proprio = z.new_zeros(1, 1, m.cfg.proprio_dim)                    # no robot in a generated video
        state = m.init_state(1, dtype=z.dtype)
        ctx, state = m.encode_context(z, proprio, und, state)
        yield self._decode(z[:, 0])
        produced = 1
        while produced < need:
            fut, _ = m.sample(ctx, torch.tensor([0]), steps=cfg.steps, with_actions=False,
                              cfg_scale=cfg.cfg_scale, generator=gen)          # [1, 1, F, C, h, w]
            for zf in fut[0, 0]:
                if produced >= need:
                    return
                frame = self._decode(zf[None])
                produced += 1
                yield frame
                if produced < need:                                       # fed back as observed
                    ctx, state = m.encode_context(zf[None, None], proprio, self._und(frame[None], text), state)

    def generate(self, image_chw, prompt, cfg: GenerateConfig) -> torch.Tensor:
        """All frames at once: [cfg.frames, 3, H, W] in [0, 1]."""
        return torch.stack(list(self.stream(image_chw, prompt, cfg)))
