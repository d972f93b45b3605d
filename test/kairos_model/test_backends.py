"""Deployed engines: the exported ONNX graphs run by onnxruntime agree with torch eager over a long
stream; artifacts verify every file and refuse tampered or inconsistent ones; quantized graphs stay
close to the float model; TensorRT runs where CUDA and tensorrt exist."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from kairos_model.backends import state_spec
from kairos_model.engine import Observation, load_engine
from kairos_model.world_model import KairosWorldModel, WorldModelConfig

pytestmark = pytest.mark.slow


def observations(n, seed=0, size=64, joints=8, instruction="press the button top down"):
    """A smooth joint trajectory with noisy camera frames: a stand-in for a real stream."""
    rng = np.random.default_rng(seed)
    q = np.cumsum(rng.normal(scale=0.02, size=(n, joints)), 0)
    base = rng.integers(0, 256, (size, size, 3))
    for t in range(n):
        img = np.clip(base + rng.normal(scale=20, size=base.shape) + 2 * t, 0, 255).astype(np.uint8)
        yield Observation(img, q[t], instruction)


def test_state_spec_is_the_torch_streaming_state():
    from training.export import flatten_state
    cfg = WorldModelConfig.preset("tiny")
    flat = flatten_state(KairosWorldModel(cfg).init_state(1))
    spec = state_spec(cfg)
    assert [tuple(t.shape) for t in flat] == [s for _, s, _ in spec]
    assert [str(t.dtype).replace("torch.", "") for t in flat] == [d for _, _, d in spec]


def test_torch_and_onnxruntime_agree_over_200_streaming_steps(exported_default):
    path, _ = exported_default
    t = load_engine(path, backend="torch", sampler_steps=2).engine
    o = load_engine(path, backend="onnx", sampler_steps=2, providers=["CPUExecutionProvider"]).engine
    assert o.backend == "onnx" and o.state_bytes() == t.state_bytes()
    diffs, prev = [], None
    for i, obs in enumerate(observations(200)):
        prefix = prev[4:7] if (prev is not None and i % 10 == 5) else None     # real-time chunking steps too
        a = t.step(obs, action_prefix=prefix)
        b = o.step(obs, action_prefix=prefix)
        diffs.append(np.abs(a.actions - b.actions).max())
        prev = a.actions
    diffs = np.array(diffs)
    assert diffs.max() < 1e-3, diffs.max()
    # no drift: the memory carried for 200 steps does not let the two backends walk apart
    assert diffs[-50:].max() < 10 * diffs[:50].max() + 1e-5, (diffs[:50].max(), diffs[-50:].max())


def test_onnx_worker_threads_do_not_spin_unless_asked(exported_default):
    """The engine's five sessions each own a thread pool; spinning workers of one would take the cores
    from the next (and from the ROS executor), so spinning is off unless asked for, and either way the
    chunk is the same."""
    path, _ = exported_default
    key = "session.intra_op.allow_spinning"

    def spinning(sess):                  # onnxruntime's default when the entry is absent: spin
        try:
            return sess.get_session_options().get_session_config_entry(key) != "0"
        except RuntimeError:
            return True

    quiet = load_engine(path, backend="onnx", sampler_steps=2, threads=2).engine
    assert not any(spinning(s) for s in quiet.sessions.values())
    from kairos_model.backends.onnx_engine import OnnxEngine
    spin = OnnxEngine.from_artifact(path, sampler_steps=2, threads=2, spinning=True)
    assert all(spinning(s) for s in spin.sessions.values())
    for obs in observations(3, seed=2):
        np.testing.assert_allclose(quiet.step(obs).actions, spin.step(obs).actions, atol=1e-6)


def test_the_tensorrt_engine_opens_its_graphs_the_way_the_onnx_engine_calls_it():
    """TensorRTEngine replaces only how graphs open and run; its override must take what
    OnnxEngine.__init__ passes (checked here without a GPU; the engines themselves need CUDA)."""
    import inspect
    from kairos_model.backends.onnx_engine import OnnxEngine
    from kairos_model.backends.tensorrt_engine import TensorRTEngine
    base = list(inspect.signature(OnnxEngine._open_sessions).parameters)
    assert list(inspect.signature(TensorRTEngine._open_sessions).parameters) == base


def test_memory_only_ticks_imagined_frames_and_guidance_agree(exported_default):
    path, _ = exported_default
    t = load_engine(path, backend="torch", sampler_steps=2, cfg_scale=2.0).engine
    o = load_engine(path, backend="onnx", sampler_steps=2, cfg_scale=2.0).engine
    for i, obs in enumerate(observations(12, seed=1)):
        sample = i % 3 == 2
        a, b = t.step(obs, sample=sample, decode_future=sample), o.step(obs, sample=sample, decode_future=sample)
        assert (a is None) == (b is None) == (not sample)
        if sample:
            assert np.abs(a.actions - b.actions).max() < 1e-3
            assert a.future_latents.shape == b.future_latents.shape       # decoded frames [F, 3, H, W]
            assert (a.future_latents.clamp(0, 1) - b.future_latents).abs().max() < 1e-3
    lat = torch.randn(2, 16, 8, 8)
    assert np.abs(t.decode_future(lat).astype(int) - o.decode_future(lat).astype(int)).max() <= 1


def test_the_exported_manifest_describes_the_graphs(exported_default):
    path, _ = exported_default
    m = json.load(open(os.path.join(path, "manifest.json")))
    assert m["format"] == "kairos-artifact-2" and set(m["files"]) >= {"context_step.onnx", "config.json"}
    ctx = m["graphs"]["context_step"]
    names = [i["name"] for i in ctx["inputs"]]
    assert names[:4] == ["latent", "image_tokens", "text_tokens", "proprio"]
    assert names[4:] == [s["name"] for s in m["state"]]
    assert [o["name"] for o in ctx["outputs"]][2:] == ["new_" + s["name"] for s in m["state"]]
    assert m["versions"]["onnxruntime"] and m["versions"]["torch"].startswith("2.13")
    assert m["provenance"]["checkpoint_files"], "the source checkpoint's hashes are recorded"


def _rehash(path):
    from training.export import write_manifest
    m = json.load(open(os.path.join(path, "manifest.json")))
    write_manifest(path, m)


@pytest.mark.parametrize("damage", ["tamper", "truncate", "extra", "config", "swapped_graph"])
def test_a_damaged_exported_artifact_is_refused(exported_default, tmp_path, damage):
    src, _ = exported_default
    art = tmp_path / "art"
    shutil.copytree(src, art)
    if damage == "tamper":
        f = art / "context_step.onnx"
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
        match = "does not match its sha256"
    elif damage == "truncate":
        f = art / "denoise_step.onnx"
        f.write_bytes(f.read_bytes()[:1000])
        match = "does not match its sha256"
    elif damage == "extra":
        (art / "other.onnx").write_bytes(b"x")
        match = "not listed"
    elif damage == "config":          # a manifest from one export, config.json from another
        m = json.load(open(art / "manifest.json"))
        m["model_config"]["action_horizon"] = 16
        json.dump(m, open(art / "manifest.json", "w"))
        match = "differs from config.json"
    else:                             # a graph replaced by another one and the hashes redone
        shutil.copy(art / "text_encoder.onnx", art / "denoise_step.onnx")
        _rehash(art)
        match = "does not have the inputs/outputs"
    with pytest.raises(ValueError, match=match):
        load_engine(str(art), backend="onnx")
    from training.export import verify_main
    assert verify_main([str(art), "--backend", "onnx"]) == 1


def test_kairos_verify_runs_every_backend_here(exported_default, capsys):
    from training.export import verify_main
    path, _ = exported_default
    assert verify_main([path]) == 0
    out = capsys.readouterr().out
    assert "sha256 verified" in out and "torch: 20 steps ok" in out
    diff = float(out.split("max |action - torch| = ")[1].split()[0])
    assert diff < 1e-3


def test_auto_backend_picks_onnx_for_an_export_and_torch_for_a_checkpoint(exported_default):
    path, _ = exported_default
    assert load_engine(path, backend="auto").engine.backend == "onnx"
    assert load_engine("artifacts/tiny_button_press", backend="auto").engine.backend == "torch"
    with pytest.raises(ValueError, match="kairos-artifact-2"):
        load_engine("artifacts/tiny_button_press", backend="onnx")


def test_quantized_graphs_stay_close_to_the_float_model(exported_default, tmp_path):
    from training.export import write_manifest
    from training.quantize import quantize_graphs
    src, _ = exported_default
    art = tmp_path / "q"
    shutil.copytree(src, art)
    m = json.load(open(art / "manifest.json"))
    m["quantized"] = quantize_graphs(str(art), m["graphs"], ["int8", "int4-text"])
    write_manifest(str(art), m)
    assert set(m["quantized"]) == {"context_step", "denoise_step", "text_encoder"}
    f = load_engine(str(art), backend="onnx", sampler_steps=2).engine
    q = load_engine(str(art), backend="onnx", sampler_steps=2, quantized=True).engine
    assert q.graph_files["text_encoder"] == "text_encoder.int4.onnx"
    err = [np.abs(f.step(o).actions - q.step(o).actions).mean() for o in observations(30, seed=2)]
    # quantization costs accuracy (measured in bench/backends.py: ~0.011 rad) but stays bounded
    assert 0 < np.mean(err) < 0.05, np.mean(err)


def test_a_checkpoint_asked_for_quantized_graphs_is_exported_with_them_apart(tmp_path, monkeypatch):
    import training.export as ex
    calls = []

    def fake_export(ckpt, out, backend, quantize=()):       # records the call; the export itself is tested above
        calls.append((ckpt, backend, tuple(quantize)))
        os.makedirs(out)
    monkeypatch.setattr(ex, "export_artifact", fake_export)
    plain = ex.ensure_exported("artifacts/tiny_button_press", cache_root=str(tmp_path), log=lambda *_: None)
    quant = ex.ensure_exported("artifacts/tiny_button_press", cache_root=str(tmp_path), log=lambda *_: None,
                               quantize=("int8", "int4-text"))
    assert quant == plain + "-int4-text-int8"                 # cached apart from the float export
    assert calls == [("artifacts/tiny_button_press", "onnx", ()),
                     ("artifacts/tiny_button_press", "onnx", ("int4-text", "int8"))]
    assert ex.ensure_exported("artifacts/tiny_button_press", cache_root=str(tmp_path), quantize=("int8", "int4-text"),
                              log=lambda *_: None) == quant and len(calls) == 2     # once


def test_tensorrt_engines_agree_with_onnxruntime(exported_default):
    from kairos_model.backends.tensorrt_engine import tensorrt_available
    ok, why = tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT backend not testable here: {why}")
    path, _ = exported_default
    o = load_engine(path, backend="onnx", sampler_steps=2).engine
    r = load_engine(path, backend="tensorrt", sampler_steps=2).engine
    diffs = [np.abs(o.step(obs).actions - r.step(obs).actions).max() for obs in observations(50)]
    assert max(diffs) < 5e-2, max(diffs)          # fp16 engines


def test_the_vae_graphs_with_the_color_shortcut_export_and_agree(tmp_path):
    """A model whose VAE has the colour shortcut (preset tiny_shortcut): its frame encoder and VAE
    decoder graphs export, and onnxruntime agrees with torch on them."""
    import onnxruntime as ort
    from dataclasses import replace
    from kairos_model.checkpoint import build_parts
    from training.export import FrameEncoderGraph, VAEDecoderGraph
    torch.manual_seed(0)
    cfg = replace(WorldModelConfig.preset("tiny"), vae="tiny_shortcut")
    parts = build_parts(cfg)
    for p in parts.values():
        p.eval()
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 64, 64, generator=g)
    latents = torch.randn(cfg.future_frames, cfg.latent_channels, *cfg.latent_hw, generator=g)
    for mod, args, ins, outs in ((FrameEncoderGraph(parts["vae"], parts["understanding"], 1.7), (image,),
                                  ["image"], ["latent", "image_tokens"]),
                                 (VAEDecoderGraph(parts["vae"], 1.7), (latents,), ["latents"], ["frames"])):
        path = str(tmp_path / f"{type(mod).__name__}.onnx")
        with torch.no_grad():
            torch.onnx.export(mod, args, path, input_names=ins, output_names=outs, opset_version=18,
                              dynamo=True, verbose=False, optimize=True)
            want = mod(*args)
        got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
            None, {n: a.numpy() for n, a in zip(ins, args)})
        for w, o in zip(want if isinstance(want, tuple) else (want,), got):
            assert np.abs(w.numpy() - o).max() < 1e-4


def test_rms_norms_are_exported_in_the_form_onnxruntime_fuses(exported_default, tmp_path):
    """FusableRMSNorm computes nn.RMSNorm's function; during export every RMS norm of the parts takes
    that form (and only then), and onnxruntime fuses each into one SimplifiedLayerNormalization kernel
    instead of leaving seven nodes (Pow ... Reciprocal, Mul)."""
    import onnx
    import onnxruntime as ort
    from kairos_model.checkpoint import build_parts
    from training.export import FusableRMSNorm, fusable_rms_norms
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 32)
    for eps in (None, 1e-5):
        norm = torch.nn.RMSNorm(32, eps=eps)
        torch.nn.init.normal_(norm.weight)
        assert torch.allclose(FusableRMSNorm(norm)(x), norm(x), atol=1e-6, rtol=1e-5)
    plain = torch.nn.RMSNorm([4, 32], elementwise_affine=False)
    assert torch.allclose(FusableRMSNorm(plain)(x), plain(x), atol=1e-6, rtol=1e-5)
    parts = build_parts(WorldModelConfig.preset("tiny"))
    before = [type(m) for p in parts.values() for m in p.modules()]
    n_norms = sum(t is torch.nn.RMSNorm for t in before)
    with pytest.raises(RuntimeError, match="inside"):
        with fusable_rms_norms(*parts.values()) as n:
            assert n == n_norms > 0
            inside = [m for p in parts.values() for m in p.modules()]
            assert not any(isinstance(m, torch.nn.RMSNorm) for m in inside)
            assert sum(isinstance(m, FusableRMSNorm) for m in inside) == n_norms
            raise RuntimeError("inside")
    assert [type(m) for p in parts.values() for m in p.modules()] == before       # put back, also on an error

    path, _ = exported_default
    for graph in ("context_step", "denoise_step"):
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"{graph}.opt.onnx")
        ort.InferenceSession(os.path.join(path, f"{graph}.onnx"), so, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(so.optimized_model_filepath, load_external_data=False).graph.node]
        assert ops.count("SimplifiedLayerNormalization") >= 24 and "Reciprocal" not in ops, graph
    with open(os.path.join(path, "manifest.json")) as f:
        assert json.load(f)["rms_norms"] == "fusable"
