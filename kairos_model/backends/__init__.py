"""Runtime backends of the streaming control step, one interface (`reset()`, `step(observation)`):

    torch     kairos_model.engine.TorchEngine        eager PyTorch from the safetensors
    onnx      backends.onnx_engine.OnnxEngine        onnxruntime (CPU / CUDA providers)
    tensorrt  backends.tensorrt_engine.TensorRTEngine TensorRT engines built on the target GPU

An exported artifact (`kairos export`, format kairos-artifact-2) holds the graphs, the safetensors and
a manifest.json; `read_artifact` verifies all of it before any backend loads a byte of it.
"""
from __future__ import annotations

import json
import os
from typing import List, Tuple

from kairos_model.checkpoint import MANIFEST, config_from_dict, verify_manifest

ARTIFACT_FORMAT = "kairos-artifact-2"


def read_artifact(path: str, need_graphs: bool = True) -> Tuple[dict, object, dict]:
    """Verify an exported artifact and return (manifest, WorldModelConfig, meta).

    Refuses, with the reason: a missing directory or manifest, any file whose sha256 differs (tampered
    or truncated), an unlisted file, a manifest whose model config differs from config.json, a
    state layout that the config would not produce, or graphs missing from the manifest."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no artifact at {path!r}")
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        raise ValueError(f"{path!r} has no {MANIFEST}: not an exported artifact (run `kairos export`)")
    verify_manifest(path)
    with open(mpath) as f:
        manifest = json.load(f)
    if manifest.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{mpath} has format {manifest.get('format')!r}; the onnx/tensorrt backends need "
                         f"{ARTIFACT_FORMAT!r} (an artifact written by `kairos export`)")
    with open(os.path.join(path, "config.json")) as f:
        doc = json.load(f)
    if doc["world_model"] != manifest.get("model_config"):
        raise ValueError(f"{path}: the model config in {MANIFEST} differs from config.json; the artifact was "
                         "assembled from different exports")
    cfg = config_from_dict(doc["world_model"])
    if need_graphs:
        from kairos_model.backends.onnx_engine import GRAPHS
        missing = [g for g in GRAPHS if g not in manifest.get("graphs", {})]
        if missing:
            raise ValueError(f"{path}: {MANIFEST} lists no graphs {missing}")
        want_state = state_spec(cfg)
        got_state = [(s["name"], tuple(s["shape"]), s["dtype"]) for s in manifest.get("state", [])]
        if want_state != got_state:
            raise ValueError(f"{path}: the memory state in {MANIFEST} does not match the model config "
                             f"(first difference near {_first_diff(want_state, got_state)})")
    return manifest, cfg, doc.get("meta", {})


def state_spec(cfg) -> List[Tuple[str, Tuple[int, ...], str]]:
    """[(name, shape, dtype)] of the flattened streaming memory of a WorldModelConfig, in graph input
    order: per SWA/DSWA layer i `state.i.k`, `.v` [1, S*N, H, D], `.slots` [S], `.next` []; per GDN
    layer `state.i.gdn` [1, H, K, V]. The one definition export and runtimes share."""
    from kairos_model.memory.attention import FrameAttentionConfig
    N = cfg.obs_tokens
    spec = []
    for i, entry in enumerate(cfg.memory.pattern):
        m = cfg.memory.mixer_config(entry)
        if isinstance(m, FrameAttentionConfig):
            S = m.mask.cache_frames
            if S is None:
                raise ValueError("a 'full' attention layer has a growing cache and cannot be exported with a "
                                 "fixed-shape state; export a model with SWA/DSWA/GDN layers (the Kairos pattern)")
            shape = (1, S * N, m.heads, m.head_dim)
            spec += [(f"state.{i}.k", shape, "float32"), (f"state.{i}.v", shape, "float32"),
                     (f"state.{i}.slots", (S,), "int64"), (f"state.{i}.next", (), "int64")]
        else:
            spec.append((f"state.{i}.gdn", (1, m.heads, m.head_k_dim, m.head_v_dim), "float32"))
    return spec


def _first_diff(a, b):
    for x, y in zip(a, b):
        if x != y:
            return f"{x} vs {y}"
    return f"{len(a)} vs {len(b)} entries"


def pick_backend(path: str) -> str:
    """'auto': the artifact's default backend when it can run here, else onnx, else torch."""
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        return "torch"
    with open(mpath) as f:
        m = json.load(f)
    if m.get("format") != ARTIFACT_FORMAT:
        return "torch"
    want = m.get("default_backend", "onnx")
    if want == "tensorrt":
        from kairos_model.backends.tensorrt_engine import tensorrt_available
        ok, _ = tensorrt_available()
        if ok:
            return "tensorrt"
        want = "onnx"
    try:
        import onnxruntime  # noqa: F401
        return want
    except ImportError:
        return "torch"


def verify_artifact(path: str, backend: str = "all", steps: int = 20) -> List[str]:
    """`kairos verify`: the manifest check, then `steps` streaming steps on each backend that can run
    here from the same observations; the onnx/tensorrt actions are compared with torch's."""
    import numpy as np
    from kairos_model.engine import Observation, load_engine
    manifest, cfg, meta = read_artifact(path)
    lines = [f"manifest ok: {len(manifest['files'])} files, sha256 verified; format {manifest['format']}",
             f"model: width {cfg.dim}, {len(cfg.memory.pattern)} layers {cfg.memory.pattern}, "
             f"{cfg.action_horizon} x {cfg.action_dim} actions"]
    names = ["torch", "onnx", "tensorrt"] if backend == "all" else [backend]
    if backend == "all":
        from kairos_model.backends.tensorrt_engine import tensorrt_available
        ok, why = tensorrt_available()
        if not ok:
            names.remove("tensorrt")
            lines.append(f"tensorrt: skipped ({why})")
    results = {}
    for name in names:
        eng = load_engine(path, backend=name, sampler_steps=2).engine
        H, W = eng.image_size
        rng = np.random.default_rng(0)
        acts = []
        for _ in range(steps):
            obs = Observation(rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                              rng.normal(size=cfg.proprio_dim), "verify the artifact")
            acts.append(eng.step(obs).actions)
        results[name] = np.stack(acts)
        if not np.isfinite(results[name]).all():
            raise ValueError(f"{name} backend produced non-finite actions")
        line = f"{name}: {steps} steps ok"
        if name != "torch" and "torch" in results:
            diff = float(np.abs(results[name] - results["torch"]).max())
            line += f", max |action - torch| = {diff:.2e}"
        lines.append(line)
    return lines
