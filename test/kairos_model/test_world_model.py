"""The MoT world model: the unified mask leaks nothing, streaming equals the training form, it can
fit a batch, presets build and count, and bad input is refused."""
import pytest
import torch

from kairos_model.memory.hybrid import HybridMemoryConfig
from kairos_model.understanding import UnderstandingConfig, UnderstandingEncoder, hash_tokenize
from kairos_model.world_model import KairosWorldModel, WorldModelConfig, count_parameters, joint_mask


def small_cfg(**kw):
    return WorldModelConfig(memory=HybridMemoryConfig(dim=64, heads=4, head_dim=16, swa_window=2,
                                                      pattern=("swa", "dswa2", "gdn"), gdn_backend="torch"),
                            future_frames=2, action_horizon=4, action_dim=3, proprio_dim=3,
                            und=UnderstandingConfig(text_tokens=2, image_tokens=2), **kw)


def inputs(cfg, B=2, T=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.latent_hw
    lat = torch.randn(B, T, cfg.latent_channels, h, w, generator=g, dtype=dtype)
    pro = torch.randn(B, T, cfg.proprio_dim, generator=g, dtype=dtype)
    und = torch.randn(B, T, cfg.und.tokens, cfg.dim, generator=g, dtype=dtype)
    act = torch.randn(B, T, cfg.action_horizon, cfg.action_dim, generator=g, dtype=dtype)
    return lat, pro, und, act


def perturbed_model(cfg):
    """adaLN-Zero and zero final layers make an untrained model's outputs constant; perturb them."""
    torch.manual_seed(0)
    m = KairosWorldModel(cfg).double()
    with torch.no_grad():
        for p in m.parameters():
            if (p == 0).all():
                p.normal_(0, 0.05)
    return m


def test_streaming_context_and_velocities_equal_the_training_form():
    cfg = small_cfg()
    m = perturbed_model(cfg).eval()
    lat, pro, und, act = inputs(cfg)
    B, T = lat.shape[:2]
    g = torch.Generator().manual_seed(1)
    fut = torch.randn(B, 1, cfg.future_frames, cfg.latent_channels, *cfg.latent_hw, generator=g, dtype=torch.float64)
    a = torch.randn(B, 1, cfg.action_horizon, cfg.action_dim, generator=g, dtype=torch.float64)
    sigma = torch.full((B, 1), 0.7, dtype=torch.float64)
    with torch.no_grad():
        full, _ = m.encode_context(lat, pro, und)
        state = m.init_state(B, dtype=torch.float64)
        for t in range(T):
            ctx, state = m.encode_context(lat[:, t:t + 1], pro[:, t:t + 1], und[:, t:t + 1], state)
            for lf, ls in zip(full.layers, ctx.layers):
                assert (lf.k[:, t] - ls.k[:, 0]).abs().max() < 1e-9
            vf_full, va_full = m.velocity(full, torch.tensor([t]), fut, a, sigma)
            vf_str, va_str = m.velocity(ctx, torch.tensor([0]), fut, a, sigma)
            assert (vf_full - vf_str).abs().max() < 1e-9 and (va_full - va_str).abs().max() < 1e-9


def test_unified_mask_leaks_no_future_and_keeps_context_clean():
    cfg = small_cfg()
    m = perturbed_model(cfg)
    lat, pro, und, act = inputs(cfg, B=1, T=6)
    lat.requires_grad_(True)
    pro.requires_grad_(True)
    und.requires_grad_(True)
    fut = torch.randn(1, 2, cfg.future_frames, cfg.latent_channels, *cfg.latent_hw, dtype=torch.float64,
                      requires_grad=True)
    a = torch.randn(1, 2, cfg.action_horizon, cfg.action_dim, dtype=torch.float64, requires_grad=True)
    ctx, _ = m.encode_context(lat, pro, und)
    anchors = torch.tensor([2, 4])
    vf, va = m.velocity(ctx, anchors, fut, a, torch.full((1, 2), 0.5, dtype=torch.float64))
    for p, t in enumerate(anchors.tolist()):
        out = vf[:, p].sum() + va[:, p].sum()
        g_lat, g_pro, g_und, g_fut = torch.autograd.grad(out, (lat, pro, und, fut), retain_graph=True)
        assert g_lat[:, t + 1:].abs().max() == 0 and g_pro[:, t + 1:].abs().max() == 0, "sees a later frame"
        assert g_und[:, t + 1:].abs().max() == 0, "und of a later frame"
        assert g_lat[:, :t + 1].abs().max() > 0                 # and does use the past and present
        other = 1 - p
        assert g_fut[:, other].abs().max() == 0, "predictions of another anchor leak"
    # the observed stream never depends on the noisy predictions
    (g,) = torch.autograd.grad(ctx.obs.sum(), (lat,), retain_graph=True)
    assert g.abs().max() > 0
    for t in range(5):
        (g,) = torch.autograd.grad(ctx.obs[:, t].sum(), (lat,), retain_graph=True)
        assert g[:, t + 1:].abs().max() == 0


def test_hidden_text_is_invisible_to_predictions_only():
    _, pred = joint_mask(n_und=4, n_text=2, n_obs=3, n_pred=5, hide_text=torch.tensor([True, False]))
    assert not pred[0, :, :, :2].any() and pred[0, :, :, 2:].all()
    assert pred[1].all()
    ctx, _ = joint_mask(4, 2, 3, 5)
    assert ctx[4:, :].all() and ctx[:4, :4].all() and not ctx[:4, 4:].any()


def test_model_overfits_one_batch():
    torch.manual_seed(0)
    cfg = small_cfg(text_dropout=0.0)
    m = KairosWorldModel(cfg)
    lat, pro, und, act = (x.float() for x in inputs(cfg, B=2, T=4))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = lambda: torch.Generator().manual_seed(0)   # same noise and sigma every step: a fixed batch
    first = None
    for _ in range(300):
        loss, _ = m.loss(lat, pro, und, act, generator=g())
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10


def test_sampler_returns_the_predicted_shapes_with_and_without_guidance():
    cfg = small_cfg()
    m = perturbed_model(cfg).float()
    lat, pro, und, _ = (x.float() for x in inputs(cfg, B=2, T=3))
    ctx, _ = m.encode_context(lat, pro, und)
    fut, act = m.sample(ctx, torch.tensor([2]), steps=3, cfg_scale=2.0)
    assert fut.shape == (2, 1, cfg.future_frames, cfg.latent_channels, *cfg.latent_hw)
    assert act.shape == (2, 1, cfg.action_horizon, cfg.action_dim) and torch.isfinite(act).all()
    fut, act = m.sample(ctx, torch.tensor([0, 1]), steps=2, with_actions=False)
    assert act is None and fut.shape[1] == 2


def test_kairos_4b_preset_is_within_ten_percent_of_four_billion():
    from kairos_model.vae import VideoVAE
    cfg = WorldModelConfig.preset("kairos_4b")
    with torch.device("meta"):
        n = sum(count_parameters(x) for x in (KairosWorldModel(cfg), UnderstandingEncoder(cfg.und),
                                              VideoVAE(cfg.vae_config)))
    assert 3.6e9 <= n <= 4.4e9


def test_bad_input_is_refused_clearly():
    cfg = small_cfg()
    m = KairosWorldModel(cfg)
    lat, pro, und, act = (x.float() for x in inputs(cfg, B=2, T=3))
    with pytest.raises(ValueError, match=r"obs_latents must be \[\?, \?, 16, 8, 8\]"):
        m.encode_context(lat[:, :, :3], pro, und)
    with pytest.raises(ValueError, match=r"proprio must be \[2, 3, 3\]"):
        m.encode_context(lat, pro[..., :2], und)
    with pytest.raises(TypeError, match="floating point"):
        m.encode_context(lat, pro.long(), und)
    with pytest.raises(ValueError, match="state must be a HybridState with 3 layers"):
        m.encode_context(lat, pro, und, state=[1, 2])
    with pytest.raises(ValueError, match="at least future_frames"):
        m.loss(lat[:, :2], pro[:, :2], und[:, :2])
    with pytest.raises(ValueError, match="unknown preset"):
        WorldModelConfig.preset("kairos_70b")
    with pytest.raises(ValueError, match="not divisible by patch"):
        small_cfg(patch=3)
    with pytest.raises(TypeError, match="list of strings"):
        hash_tokenize("press", 64, 4)
    enc = UnderstandingEncoder(UnderstandingConfig(dim=32))
    with pytest.raises(ValueError, match="2 instructions for a batch of 1"):
        enc(["a", "b"], torch.rand(1, 3, 64, 64))
    with pytest.raises(FileNotFoundError, match="nothing is fetched"):
        UnderstandingEncoder(UnderstandingConfig(dim=32, qwen_path="/nonexistent/qwen"))
