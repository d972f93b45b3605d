"""The training forms on a CUDA GPU (skipped with their reason elsewhere): seeded CPU generators drive
noise for CUDA tensors, bf16 autocast, and GatedDeltaNet's backward (fla's kernel, or the pure-torch
chunked form where fla refuses its backward) agreeing with the CPU's gradients."""
import pytest
import torch

from kairos_model.vae import VideoVAE
from kairos_model.world_model import KairosWorldModel, WorldModelConfig

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_vae_forward_on_cuda_with_a_seeded_cpu_generator_matches_the_cpu():
    cfg = WorldModelConfig.preset("tiny")
    torch.manual_seed(0)
    vae = VideoVAE(cfg.vae_config)
    s = cfg.vae_config.spatial_down
    x = torch.rand(2, 1, 3, cfg.latent_hw[0] * s, cfg.latent_hw[1] * s)
    rec_cpu, mu_cpu, _ = vae(x, torch.Generator().manual_seed(3))
    rec_gpu, mu_gpu, _ = vae.cuda()(x.cuda(), torch.Generator().manual_seed(3))
    assert (mu_gpu.cpu() - mu_cpu).abs().max() < 1e-3
    assert (rec_gpu.cpu() - rec_cpu).abs().max() < 1e-2     # the same noise draw, TF32 convolutions


def test_world_model_loss_backward_on_cuda_agrees_with_the_cpu():
    cfg = WorldModelConfig.preset("tiny")
    torch.manual_seed(0)
    wm = KairosWorldModel(cfg)
    g = torch.Generator().manual_seed(0)
    T, M = cfg.future_frames + 3, cfg.und.text_tokens + cfg.und.image_tokens
    lat = torch.randn(2, T, cfg.latent_channels, *cfg.latent_hw, generator=g)
    prop = torch.randn(2, T, cfg.proprio_dim, generator=g)
    und = torch.randn(2, T, M, cfg.dim, generator=g)
    act = torch.randn(2, T, cfg.action_horizon, cfg.action_dim, generator=g)
    grads = {}
    for dev in ("cpu", "cuda"):
        wm.to(dev).zero_grad()
        loss, _ = wm.loss(*(t.to(dev) for t in (lat, prop, und, act)), generator=torch.Generator().manual_seed(1),
                          hide_text=torch.zeros(2, T - cfg.future_frames, dtype=torch.bool, device=dev))
        loss.backward()
        grads[dev] = torch.cat([p.grad.flatten().cpu() for p in wm.parameters() if p.grad is not None])
    rel = (grads["cuda"] - grads["cpu"]).norm() / grads["cpu"].norm()
    assert torch.isfinite(grads["cuda"]).all() and rel < 1e-2
    with torch.autocast("cuda", dtype=torch.bfloat16):     # the trainer's mixed precision
        loss, _ = wm.loss(*(t.cuda() for t in (lat, prop, und, act)), generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss)
