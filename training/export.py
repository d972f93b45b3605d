"""Export a checkpoint to the deployed engines: ONNX graphs with explicit streaming state, plus a
verified artifact directory (`manifest.json`).

    kairos export ARTIFACT_DIR --checkpoint runs/tiny/artifact [--backend onnx|tensorrt] [--quantize int8]
    kairos verify ARTIFACT_DIR

Graphs (all batch 1, the robot's case; shapes are fixed by the model config):

    text_encoder.onnx   word ids [1, W] int64                -> text_tokens [1, Tt, C]
    frame_encoder.onnx  image [1, 3, H, W] float in [0, 1]   -> latent [1, C_lat, h, w] (VAE mean x latent
                                                                scale), image_tokens [1, Ti, C]
    context_step.onnx   latent, image_tokens, text_tokens, proprio [1, J], state.* (the memory)
                                                             -> ctx_k, ctx_v [L, M+N, H, D], new_state.*
    denoise_step.onnx   ctx_k, ctx_v, fut [1, F, C_lat, h, w], act [1, Hz, A], sigma [1], text_visible [1]
                                                             -> v_fut, v_act (the flow velocity)
    vae_decoder.onnx    latents [F, C_lat, h, w]              -> frames [F, 3, H, W]

The memory state is explicit: per layer `state.<i>.k`/`.v` [1, S*N, H, D], `.slots` [S] int64 and
`.next` [] int64 for SWA/DSWA ring buffers, `state.<i>.gdn` [1, H, K, V] for GatedDeltaNet layers.

The few-step sampling loop is driven by a thin loop in the runtime (kairos_model.backends), not
unrolled into the graph: the step count, classifier-free guidance and real-time-chunking inpainting
are run-time choices of the node, and one denoise graph serves them all; a loop iteration costs a
few array operations next to the graph call. The world model's context (memory update, und/obs
keys and values) runs once per control step in context_step, as in the torch engine.

The artifact also holds the checkpoint's safetensors and config.json, so the same directory runs
on the torch backend (for parity checks and as a fallback).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from kairos_model.backends import ARTIFACT_FORMAT, state_spec as backend_state_spec
from kairos_model.checkpoint import MANIFEST, load_checkpoint, sha256_file
from kairos_model.durable import fsync_dir, fsync_tree, replace_dir
from kairos_model.memory.attention import FrameAttention, KVCacheState
from kairos_model.memory.hybrid import HybridState
from kairos_model.understanding import HashedTextEncoder, UnderstandingEncoder
from kairos_model.vae import VideoVAE
from kairos_model.world_model import Context, KairosWorldModel, LayerContext

# ---- state flattening (the single definition of the state's names, used by runtime too) ---------
def state_spec(model: KairosWorldModel):
    """[(name, shape, dtype)] of the flattened streaming state (kairos_model.backends.state_spec)."""
    return backend_state_spec(model.cfg)


def flatten_state(state: HybridState) -> List[torch.Tensor]:
    return state.tensors()


def unflatten_state(model: KairosWorldModel, flat) -> HybridState:
    layers, i = [], 0
    for blk in model.blocks:
        if isinstance(blk.temporal, FrameAttention):
            layers.append(KVCacheState(*flat[i:i + 4]))
            i += 4
        else:
            layers.append(flat[i])
            i += 1
    return HybridState(layers)


# ---- graph wrappers ------------------------------------------------------------------------------
class TextEncoderGraph(nn.Module):
    """word ids [1, W] (0 pads; hash_tokenize) -> text tokens [1, Tt, C]."""

    def __init__(self, und: UnderstandingEncoder):
        super().__init__()
        if not isinstance(und.text, HashedTextEncoder):
            raise ValueError("only the built-in hashed text encoder exports to ONNX; a Qwen text encoder "
                             "runs on the torch backend")
        self.und = und

    def forward(self, ids):
        t = self.und.text
        valid = ids > 0
        h = t.embed(ids) + t.pos
        h = t.encoder(h, src_key_padding_mask=~(valid | ~valid.any(1, keepdim=True)))
        return t.pool(h, valid) + self.und.type_embed[0]


class FrameEncoderGraph(nn.Module):
    """image [1, 3, H, W] in [0, 1] -> (latent [1, C_lat, h, w] scaled, image tokens [1, Ti, C]).
    With und.cfg.keypoint_hold also (kp_held [1, C_kp, 3], kp_held_conf [1, C_kp]) in and their new
    values out: the held goal readings as streaming state (UnderstandingEncoder.encode_image_held)."""

    def __init__(self, vae: VideoVAE, und: UnderstandingEncoder, latent_scale: float):
        super().__init__()
        self.vae, self.und, self.latent_scale = vae, und, float(latent_scale)

    def forward(self, image, *hold):
        mu, _ = self.vae.encode(image.unsqueeze(1))
        if hold:
            tokens, held, held_conf = self.und.encode_image_held(image, *hold)
            return mu[:, 0] * self.latent_scale, tokens, held, held_conf
        return mu[:, 0] * self.latent_scale, self.und.encode_image(image)


class ContextStepGraph(nn.Module):
    """One memory update: (latent, image tokens, text tokens, proprio, *state) -> (ctx_k, ctx_v, *state)."""

    def __init__(self, model: KairosWorldModel, und: UnderstandingEncoder):
        super().__init__()
        self.model, self.und = model, und

    def forward(self, latent, image_tokens, text_tokens, proprio, *state):
        und = self.und.combine(text_tokens, image_tokens).unsqueeze(1)            # [1, 1, M, C]
        ctx, new = self.model.encode_context(latent.unsqueeze(1), proprio.unsqueeze(1), und,
                                             unflatten_state(self.model, list(state)))
        k = torch.stack([lc.k[0, 0] for lc in ctx.layers])                         # [L, M+N, H, D]
        v = torch.stack([lc.v[0, 0] for lc in ctx.layers])
        return (k, v, *flatten_state(new))


class DenoiseStepGraph(nn.Module):
    """The flow velocity of the prediction tokens given the step's context."""

    def __init__(self, model: KairosWorldModel, und_tokens: int):
        super().__init__()
        self.model, self.und_tokens = model, und_tokens

    def forward(self, ctx_k, ctx_v, fut, act, sigma, text_visible):
        layers = [LayerContext(ctx_k[i][None, None], ctx_v[i][None, None]) for i in range(ctx_k.shape[0])]
        ctx = Context(layers, self.und_tokens, self.model.cfg.und.text_tokens, ctx_k.new_zeros(1, 1, 1, 1))
        anchors = torch.zeros(1, dtype=torch.long)
        vf, va = self.model.velocity(ctx, anchors, fut.unsqueeze(1), act.unsqueeze(1), sigma.view(1, 1),
                                     hide_text=~text_visible.view(1, 1))
        return vf[:, 0], va[:, 0]


class VAEDecoderGraph(nn.Module):
    """latents [F, C_lat, h, w] (scaled) -> frames [F, 3, H, W] in [0, 1] (each latent decoded alone)."""

    def __init__(self, vae: VideoVAE, latent_scale: float):
        super().__init__()
        self.vae, self.latent_scale = vae, float(latent_scale)

    def forward(self, latents):
        return self.vae.decode(latents.unsqueeze(1) / self.latent_scale)[:, 0].clamp(0, 1)


# ---- export ----------------------------------------------------------------------------------------
def _example_inputs(cfg, parts, latent_scale) -> Dict[str, Tuple[Tuple[str, ...], tuple]]:
    """graph name -> (input names, example tensors)."""
    model: KairosWorldModel = parts["world_model"]
    vae: VideoVAE = parts["vae"]
    s = vae.cfg.spatial_down
    h, w = cfg.latent_hw
    C, c = cfg.dim, cfg.latent_channels
    Tt, Ti = cfg.und.text_tokens, cfg.und.image_out_tokens
    L, M, N = len(model.blocks), cfg.und.tokens, cfg.obs_tokens
    H, D = cfg.memory.heads, cfg.memory.head_dim
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(1, cfg.und.max_words, dtype=torch.long)
    ids[0, :4] = torch.tensor([11, 22, 33, 44])
    image = torch.rand(1, 3, h * s, w * s, generator=g)
    st = flatten_state(model.init_state(1))
    state_names = tuple(n for n, _, _ in state_spec(model))
    und = parts["understanding"]
    frame = (("image",), (image,))
    if und.cfg.keypoint_hold:
        held, held_conf = und.image.init_hold(1)
        frame = (("image",) + HOLD_NAMES, (image, torch.rand_like(held), torch.rand_like(held_conf)))
    return {
        "text_encoder": (("ids",), (ids,)),
        "frame_encoder": frame,
        "context_step": (("latent", "image_tokens", "text_tokens", "proprio") + state_names,
                         (torch.randn(1, c, h, w, generator=g), torch.randn(1, Ti, C, generator=g),
                          torch.randn(1, Tt, C, generator=g), torch.randn(1, cfg.proprio_dim, generator=g), *st)),
        "denoise_step": (("ctx_k", "ctx_v", "fut", "act", "sigma", "text_visible"),
                         (torch.randn(L, M + N, H, D, generator=g), torch.randn(L, M + N, H, D, generator=g),
                          torch.randn(1, cfg.future_frames, c, h, w, generator=g),
                          torch.randn(1, cfg.action_horizon, cfg.action_dim, generator=g),
                          torch.tensor([0.5]), torch.tensor([True]))),
        "vae_decoder": (("latents",), (torch.randn(cfg.future_frames, c, h, w, generator=g),)),
    }


HOLD_NAMES = ("kp_held", "kp_held_conf")      # the frame encoder's state with und.keypoint_hold

OUTPUT_NAMES = {
    "text_encoder": lambda model: ("text_tokens",),
    "frame_encoder": lambda model: ("latent", "image_tokens") + (
        tuple("new_" + n for n in HOLD_NAMES) if model.cfg.und.keypoint_hold else ()),
    "context_step": lambda model: ("ctx_k", "ctx_v") + tuple("new_" + n for n, _, _ in state_spec(model)),
    "denoise_step": lambda model: ("v_fut", "v_act"),
    "vae_decoder": lambda model: ("frames",),
}


# Bumped when the exported graphs change for the same checkpoint, so that ensure_exported's cache
# (keyed by the checkpoint's files) exports them again. 2: RMS norms in the fusable form (below).
EXPORT_REVISION = 2


class FusableRMSNorm(nn.Module):
    """An nn.RMSNorm as it is exported: x / sqrt(mean(x^2) + eps) * weight, over its normalized
    dims. The same function (to float rounding); written with Div because that is the op pattern
    onnxruntime's graph optimizer fuses into one SimplifiedLayerNormalization kernel (torch exports
    nn.RMSNorm at opset 18 as Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul, Mul, which it leaves as
    seven nodes), and plain ops that TensorRT's parser takes. Eager torch keeps nn.RMSNorm (its fused
    kernel is the faster one there). x: [..., *normalized_shape]."""

    def __init__(self, norm: nn.RMSNorm):
        super().__init__()
        self.weight = norm.weight                         # shared, not copied: None without affine
        self.eps = norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
        self.dims = tuple(range(-len(norm.normalized_shape), 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x / torch.sqrt(x.pow(2).mean(self.dims, keepdim=True) + self.eps)
        return y if self.weight is None else y * self.weight


@contextlib.contextmanager
def fusable_rms_norms(*modules: nn.Module):
    """Within the block every nn.RMSNorm inside `modules` is a FusableRMSNorm on the same weight;
    the originals are put back after (also on an error)."""
    swaps = []
    for root in modules:
        for parent in root.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.RMSNorm):
                    swaps.append((parent, name, child))
    for parent, name, child in swaps:
        setattr(parent, name, FusableRMSNorm(child))
    try:
        yield len(swaps)
    finally:
        for parent, name, child in reversed(swaps):
            setattr(parent, name, child)


def build_graph_modules(parts, latent_scale: float) -> Dict[str, nn.Module]:
    model, und, vae = parts["world_model"], parts["understanding"], parts["vae"]
    return {"text_encoder": TextEncoderGraph(und), "frame_encoder": FrameEncoderGraph(vae, und, latent_scale),
            "context_step": ContextStepGraph(model, und),
            "denoise_step": DenoiseStepGraph(model, model.cfg.und.tokens),
            "vae_decoder": VAEDecoderGraph(vae, latent_scale)}


def _io_spec(path: str) -> dict:
    import onnx
    m = onnx.load(path, load_external_data=False)
    types = {1: "float32", 7: "int64", 9: "bool", 10: "float16", 6: "int32"}

    def one(v):
        t = v.type.tensor_type
        return {"name": v.name, "dtype": types.get(t.elem_type, str(t.elem_type)),
                "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]}
    return {"inputs": [one(v) for v in m.graph.input], "outputs": [one(v) for v in m.graph.output]}


RMS_NORM_FORMS = ("fusable", "torch")


def export_onnx_graphs(parts, latent_scale: float, out_dir: str, opset: int = 18, progress=None,
                       rms_norms: str = "fusable") -> Dict[str, dict]:
    """Export the five graphs to out_dir; returns {graph: {"file", "inputs", "outputs"}}.
    rms_norms: "fusable" (FusableRMSNorm, the default) or "torch" (torch's own export of nn.RMSNorm,
    the form before EXPORT_REVISION 2; kept for bench/onnx_norms.py's side-by-side measurement)."""
    if rms_norms not in RMS_NORM_FORMS:
        raise ValueError(f"rms_norms must be one of {RMS_NORM_FORMS}, got {rms_norms!r}")
    import logging
    for name in ("onnx_ir", "onnxscript"):          # their passes log every rewrite at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    # Known, harmless notices that would bury the export's progress bar on every first run: the
    # optimizer declining to fold a multi-output Split, and torch's exporter noting that torchvision
    # (whose detection ops this model never uses) is not installed, and onnx_ir typing an empty attribute
    # list as INTS (the graphs are checked against torch to ~1e-6 by `kairos verify` and the tests).
    logging.getLogger("onnxscript.optimizer._constant_folding").setLevel(logging.ERROR)
    logging.getLogger("onnx_ir._convenience").setLevel(logging.ERROR)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    cfg = parts["world_model"].cfg
    for p in parts.values():
        p.eval().float()
    modules = build_graph_modules(parts, latent_scale)
    examples = _example_inputs(cfg, parts, latent_scale)
    graphs = {}
    with fusable_rms_norms(*parts.values()) if rms_norms == "fusable" else contextlib.nullcontext():
        for name, mod in modules.items():
            graphs[name] = _export_one(name, mod, examples[name], parts, out_dir, opset, progress)
    return graphs


def _export_one(name, mod, example, parts, out_dir, opset, progress) -> dict:
    """One graph: torch.onnx (dynamo) -> checked ONNX in out_dir/<name>.onnx; returns its io spec."""
    import warnings
    import onnx
    if progress:
        progress(name)
    in_names, args = example
    out_names = OUTPUT_NAMES[name](parts["world_model"])
    path = os.path.join(out_dir, f"{name}.onnx")
    mod.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch's own pytree, not this code, still calls a deprecated isinstance check while tracing
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        prog = torch.onnx.export(mod, args, input_names=list(in_names), output_names=list(out_names),
                                 opset_version=opset, dynamo=True, verbose=False, optimize=True)
    proto = prog.model_proto
    onnx.checker.check_model(proto)
    onnx.save_model(proto, path)
    return {"file": f"{name}.onnx", **_io_spec(path)}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except Exception:
        return ""


def _versions() -> dict:
    import importlib.metadata as md
    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxscript", "tensorrt"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def write_manifest(out: str, doc: dict) -> dict:
    """Hash every file of the artifact (except the manifest itself) into doc['files'] and write it."""
    files = {}
    for root, _, names in os.walk(out):
        for n in sorted(names):
            rel = os.path.relpath(os.path.join(root, n), out)
            if rel != MANIFEST:
                files[rel] = sha256_file(os.path.join(out, rel))
    doc["files"] = dict(sorted(files.items()))
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump(doc, f, indent=2)
    return doc


def export_artifact(checkpoint: str, out: str, backend: str = "onnx", quantize: Tuple[str, ...] = (),
                    opset: int = 18, force: bool = False, keypoint_hold: Optional[bool] = None,
                    rms_norms: str = "fusable") -> dict:
    """Export `checkpoint` (a `kairos train` artifact or a packaged one) into the artifact directory `out`.
    keypoint_hold: override the model's und.keypoint_hold (None: as the checkpoint says); the
    artifact's config then says what its graphs do. rms_norms: as in export_onnx_graphs."""
    from tqdm import tqdm
    if os.path.abspath(checkpoint) == os.path.abspath(out):
        raise ValueError("export needs a new output directory, not the checkpoint itself")
    if os.path.exists(out) and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    cfg, parts = load_checkpoint(checkpoint)
    with open(os.path.join(checkpoint, "config.json")) as f:
        ck_doc = json.load(f)
    meta = ck_doc.get("meta", {})
    if keypoint_hold is not None:
        if keypoint_hold and not cfg.und.keypoint_tasks:
            raise ValueError(f"{checkpoint} has no keypoint net: keypoint_hold needs one")
        parts["understanding"].cfg.keypoint_hold = bool(keypoint_hold)
        ck_doc["world_model"].setdefault("und", {})["keypoint_hold"] = bool(keypoint_hold)
    src_manifest = {}
    if os.path.isfile(os.path.join(checkpoint, MANIFEST)):
        with open(os.path.join(checkpoint, MANIFEST)) as f:
            src_manifest = json.load(f)
    tmp = f"{out.rstrip('/')}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        for n in os.listdir(checkpoint):          # the torch weights travel with the graphs
            if n.endswith(".safetensors"):
                shutil.copy2(os.path.join(checkpoint, n), os.path.join(tmp, n))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(ck_doc, f, indent=1)
        bar = tqdm(total=5, desc="export", unit="graph")
        graphs = export_onnx_graphs(parts, meta.get("latent_scale", 1.0), tmp, opset,
                                    progress=lambda n: (bar.set_postfix_str(n), bar.update(1)), rms_norms=rms_norms)
        bar.close()
        quant = {}
        if quantize:
            from training.quantize import quantize_graphs
            quant = quantize_graphs(tmp, graphs, quantize)
        doc = {"format": ARTIFACT_FORMAT, "backends": ["torch", "onnx"] + (["tensorrt"] if backend == "tensorrt" else []),
               "default_backend": "tensorrt" if backend == "tensorrt" else "onnx",
               "model_config": ck_doc["world_model"], "graphs": graphs, "quantized": quant,
               "state": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in state_spec(parts["world_model"])],
               "versions": _versions(), "opset": opset, "rms_norms": rms_norms, "export_revision": EXPORT_REVISION,
               "provenance": {"checkpoint": os.path.abspath(checkpoint), "checkpoint_files": src_manifest.get("files"),
                              "checkpoint_rebuild": src_manifest.get("rebuild"), "git_commit": _git_commit(),
                              "created": _dt.datetime.now().isoformat(timespec="seconds")}}
        write_manifest(tmp, doc)
        if force:                         # the old artifact stays until the new one is complete
            replace_dir(tmp, out)
        else:
            fsync_tree(tmp)               # on disk before the rename makes it the artifact
            try:
                os.replace(tmp, out)
            except OSError:
                if os.path.isdir(out):    # another process finished the same export first
                    raise FileExistsError(f"{out} appeared while exporting") from None
                raise
            fsync_dir(os.path.dirname(os.path.abspath(out)))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backend == "tensorrt":
        from kairos_model.backends.tensorrt_engine import build_engines
        build_engines(out)
    return doc


def ensure_exported(artifact: str, cache_root: str = "", log=print, quantize: Tuple[str, ...] = ()) -> str:
    """A checkpoint given to the onnx/tensorrt backend is exported once (kairos export) into
    cache_root/<name>-<hash of its files> ($KAIROS_EXPORT_CACHE, default ~/.cache/kairos/exported), and
    that directory is used; an exported artifact is returned as is. The main job ships the small torch
    checkpoint and exports it on first run (about a minute) rather than committing ~45 MB of float32
    graphs. quantize: also add these quantized graphs (kairos export --quantize), cached apart."""
    mpath = os.path.join(artifact, MANIFEST)
    if os.path.isfile(mpath):
        with open(mpath) as f:
            if json.load(f).get("format") == ARTIFACT_FORMAT:
                return artifact
    import hashlib
    h = hashlib.sha256(f"export revision {EXPORT_REVISION}".encode())
    for n in sorted(os.listdir(artifact)):
        if n.endswith(".safetensors") or n == "config.json":
            h.update(n.encode() + sha256_file(os.path.join(artifact, n)).encode())
    cache_root = cache_root or os.environ.get("KAIROS_EXPORT_CACHE", os.path.expanduser("~/.cache/kairos/exported"))
    quantize = tuple(sorted(quantize))
    out = os.path.join(cache_root, f"{os.path.basename(os.path.normpath(artifact))}-{h.hexdigest()[:12]}"
                       + "".join(f"-{q}" for q in quantize))
    if not os.path.isdir(out):
        log(f"exporting checkpoint {artifact} to ONNX (once, about a minute) -> {out}")
        os.makedirs(cache_root, exist_ok=True)
        try:
            export_artifact(artifact, out, "onnx", quantize)
        except FileExistsError:           # another process finished the same export first: use theirs
            log(f"{out} was exported concurrently by another process; using it")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos export", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="artifact directory to write")
    ap.add_argument("--checkpoint", required=True, help="a checkpoint directory (runs/X/artifact or artifacts/Y)")
    ap.add_argument("--backend", choices=("onnx", "tensorrt"), default="onnx",
                    help="tensorrt also builds the TensorRT engines here (needs a CUDA GPU and tensorrt)")
    ap.add_argument("--quantize", action="append", default=[], choices=("int8", "int4-text"),
                    help="add quantized graphs: int8 (dynamic, onnxruntime CPU) for the world-model graphs, "
                         "int4-text (weight-only 4-bit) for the text encoder; repeatable")
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--force", action="store_true", help="replace an existing output directory")
    ap.add_argument("--keypoint-hold", action="store_true", default=None,
                    help="the graphs hold each episode's surest goal readings (a model with a keypoint net)")
    a = ap.parse_args(argv)
    doc = export_artifact(a.checkpoint, a.out, a.backend, tuple(a.quantize), a.opset, a.force, a.keypoint_hold)
    print(f"exported {len(doc['graphs'])} graphs to {a.out} ({len(doc['files'])} files in {MANIFEST})")
    return 0


def verify_main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos verify",
                                 description="check an artifact: every file's sha256, the graphs' inputs and "
                                             "outputs against the model config, and one step on each backend")
    ap.add_argument("artifact")
    ap.add_argument("--backend", default="all", choices=("all", "torch", "onnx", "tensorrt"))
    a = ap.parse_args(argv)
    from kairos_model.backends import verify_artifact
    try:
        lines = verify_artifact(a.artifact, a.backend)
    except (ValueError, FileNotFoundError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
