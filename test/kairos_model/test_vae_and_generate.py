"""The causal video VAE and world generation: causality, piecewise = whole, shapes and errors,
checkpoints that round-trip, and generation far past a training clip with a state that stays put."""
import os

import pytest
import torch

from kairos_model.checkpoint import build_parts, load_checkpoint, save_checkpoint
from kairos_model.generate import GenerateConfig, WorldGenerator
from kairos_model.vae import VAE_PRESETS, CausalTemporalConv, VAEStreamState, VideoVAE
from kairos_model.world_model import WorldModelConfig


def vae_with_temporal_weights():
    torch.manual_seed(0)
    v = VideoVAE(VAE_PRESETS["tiny"]).eval()
    for m in v.modules():                      # zero-initialised residuals would make causality trivial
        if isinstance(m, CausalTemporalConv):
            torch.nn.init.normal_(m.conv.weight, std=0.1)
    return v


def test_vae_shapes_and_single_images():
    v = vae_with_temporal_weights()
    x = torch.rand(2, 9, 3, 64, 64)
    mu, logvar = v.encode(x)
    assert mu.shape == logvar.shape == (2, 3, 16, 8, 8)
    assert v.decode(mu).shape == x.shape
    mu1, _ = v.encode(x[:, :1])                # the first frame alone is a valid clip
    assert mu1.shape == (2, 1, 16, 8, 8) and torch.allclose(mu1[:, 0], mu[:, 0], atol=1e-5)


def test_vae_is_causal_and_piecewise_equals_whole():
    v = vae_with_temporal_weights()
    x = torch.rand(1, 13, 3, 64, 64, requires_grad=True)
    mu, _ = v.encode(x)
    for j in range(mu.shape[1]):               # latent j sees frames <= 4j only
        (g,) = torch.autograd.grad(mu[:, j].sum(), x, retain_graph=True)
        assert g[:, :4 * j + 1].abs().max() > 0
        assert g[:, 4 * j + 1:].abs().sum() == 0
    with torch.no_grad():
        mu, _ = v.encode(x)
        st = VAEStreamState()
        parts = [v.encode(x[:, :5], st)[0], v.encode(x[:, 5:9], st)[0], v.encode(x[:, 9:], st)[0]]
        assert (torch.cat(parts, 1) - mu).abs().max() < 1e-5
        st = VAEStreamState()
        dec = torch.cat([v.decode(mu[:, :1], st), v.decode(mu[:, 1:2], st), v.decode(mu[:, 2:], st)], 1)
        assert (dec - v.decode(mu)).abs().max() < 1e-5


def test_vae_rejects_bad_clips():
    v = VideoVAE(VAE_PRESETS["tiny"])
    with pytest.raises(ValueError, match=r"1 \+ 4 \* k frames, got 6"):
        v.encode(torch.rand(1, 6, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        v.encode(torch.rand(1, 5, 64, 64, 3))
    with pytest.raises(TypeError, match="floating point"):
        v.encode(torch.zeros(1, 5, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="divisible by 8"):
        v.latent_shape(5, 60, 64)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    cfg = WorldModelConfig.preset("tiny")
    parts = build_parts(cfg)
    save_checkpoint(str(tmp_path), cfg, parts)
    cfg2, loaded = load_checkpoint(str(tmp_path))
    assert cfg2 == cfg
    for name in parts:
        for (k, a), (_, b) in zip(parts[name].state_dict().items(), loaded[name].state_dict().items()):
            assert torch.equal(a, b), k
    os.remove(tmp_path / "vae.safetensors")
    with pytest.raises(FileNotFoundError, match="no vae.safetensors"):
        load_checkpoint(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_checkpoint(str(tmp_path / "nowhere"))


def test_generation_runs_far_past_a_training_clip_with_constant_state():
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny")
    parts = build_parts(cfg)
    gen = WorldGenerator(parts["world_model"], parts["vae"], parts["understanding"])
    sizes = []
    orig = gen.model.encode_context

    def spy(*a, **k):
        ctx, state = orig(*a, **k)
        sizes.append(state.nbytes())
        return ctx, state

    gen.model.encode_context = spy
    frames = gen.generate(torch.rand(3, 64, 64), "a red ball falls", GenerateConfig(frames=70, steps=2))
    assert frames.shape == (70, 3, 64, 64) and torch.isfinite(frames).all()
    assert len(sizes) == gen.latent_frames_needed(70) and len(set(sizes)) == 1
    with pytest.raises(ValueError, match="must be 64x64"):
        gen.generate(torch.rand(3, 32, 32), "x", GenerateConfig(frames=5))
