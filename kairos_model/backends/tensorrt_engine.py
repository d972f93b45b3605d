"""TensorRT backend: engines built from the artifact's ONNX graphs on the target GPU, cached by GPU
model, TensorRT version and precision, then driven by the same thin sampling loop as the onnx backend
(TensorRTEngine subclasses OnnxEngine and replaces only how a graph runs).

    build_engines("artifacts/x_onnx", precision="fp16")   # kairos export ... --backend tensorrt does this
    eng = load_engine("artifacts/x_onnx", backend="tensorrt").engine

Cache: $KAIROS_TRT_CACHE (default ~/.cache/kairos/tensorrt)/<sha256 of manifest.json>[:16]/
<gpu name>-trt<version>-<precision>/<graph>.engine. The artifact directory itself never changes (its
manifest hashes every file), and an engine built for another GPU or TensorRT version is never loaded.

Needs a CUDA GPU, torch with CUDA, and the `tensorrt` wheel; `tensorrt_available()` says why not.
Precision: 'fp32', 'fp16' (builder flag; TensorRT keeps fp32 where it must) or 'fp8' (Hopper and
newer; TensorRT needs Q/DQ nodes in the graph for real FP8 kernels, so an unquantized graph builds
with FP8 allowed but runs mostly in FP16: measure before relying on it).
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Dict, Tuple

import numpy as np
import torch

from kairos_model.backends.onnx_engine import GRAPHS, OnnxEngine
from kairos_model.durable import fsync_dir

PRECISIONS = ("fp32", "fp16", "fp8")


def tensorrt_available() -> Tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "CUDA is not available (TensorRT needs an NVIDIA GPU)"
    try:
        import tensorrt  # noqa: F401
    except Exception as e:
        return False, f"the tensorrt package could not be imported: {e!r}"
    return True, ""


def _trt():
    ok, why = tensorrt_available()
    if not ok:
        raise RuntimeError(f"the tensorrt backend cannot run here: {why}")
    import tensorrt as trt
    return trt


def cache_dir(artifact: str, precision: str) -> str:
    trt = _trt()
    with open(os.path.join(artifact, "manifest.json"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name()).strip("_")
    root = os.environ.get("KAIROS_TRT_CACHE", os.path.expanduser("~/.cache/kairos/tensorrt"))
    return os.path.join(root, digest, f"{gpu}-trt{trt.__version__}-{precision}")


def build_engines(artifact: str, precision: str = "fp16", workspace_gb: float = 4.0, force: bool = False
                  ) -> Dict[str, str]:
    """Build (or find in the cache) one serialized engine per graph; returns {graph: engine path}."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    trt = _trt()
    from kairos_model.backends import read_artifact
    manifest, _, _ = read_artifact(artifact)
    out = cache_dir(artifact, precision)
    os.makedirs(out, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    paths = {}
    for g in GRAPHS:
        dst = os.path.join(out, f"{g}.engine")
        paths[g] = dst
        if os.path.isfile(dst) and not force:
            continue
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(os.path.join(artifact, manifest["graphs"][g]["file"])):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {g}.onnx: {errs}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        flags = {"fp16": ["FP16"], "fp8": ["FP16", "FP8"], "fp32": []}[precision]
        for flag in flags:
            if hasattr(trt.BuilderFlag, flag):
                config.set_flag(getattr(trt.BuilderFlag, flag))
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {g} ({precision})")
        tmp = dst + ".partial"
        with open(tmp, "wb") as f:
            f.write(bytes(blob))
            f.flush()
            os.fsync(f.fileno())          # a power cut never leaves a truncated engine under its final name
        os.replace(tmp, dst)
        fsync_dir(os.path.dirname(dst))
    return paths


_TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "bool": torch.bool,
                "int32": torch.int32}


class _TrtGraph:
    """One deserialized engine with device buffers for its fixed-shape inputs and outputs."""

    def __init__(self, runtime, path: str, io: dict):
        with open(path, "rb") as f:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError(f"{path} could not be deserialized (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()
        self.inputs = [i["name"] for i in io["inputs"]]
        self.outputs = [o["name"] for o in io["outputs"]]
        self.buffers = {}
        for spec in io["inputs"] + io["outputs"]:
            t = torch.empty(tuple(spec["shape"]), dtype=_TORCH_DTYPE[spec["dtype"]], device="cuda")
            self.buffers[spec["name"]] = t
            self.context.set_tensor_address(spec["name"], t.data_ptr())
        self.stream = torch.cuda.Stream()

    def run(self, feeds: dict) -> list:
        with torch.cuda.stream(self.stream):
            for name in self.inputs:
                self.buffers[name].copy_(torch.from_numpy(np.asarray(feeds[name])), non_blocking=False)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            self.stream.synchronize()
            return [self.buffers[n].cpu().numpy() for n in self.outputs]


class TensorRTEngine(OnnxEngine):
    backend = "tensorrt"

    def __init__(self, path, manifest, cfg, meta, sampler_steps: int = 4, cfg_scale: float = 1.0, seed: int = 0,
                 precision: str = "fp16"):
        self.precision = precision
        super().__init__(path, manifest, cfg, meta, sampler_steps=sampler_steps, cfg_scale=cfg_scale, seed=seed)

    def _open_sessions(self, providers, threads, quantized, spinning: bool = False) -> None:
        """TensorRT engines instead of onnxruntime sessions (threads and spinning do not apply)."""
        trt = _trt()
        paths = build_engines(self.path, self.precision)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.graph_files = {g: paths[g] for g in GRAPHS}
        self.sessions = {g: _TrtGraph(runtime, paths[g], self.manifest["graphs"][g]) for g in GRAPHS}

    def _run(self, graph: str, feeds: dict) -> list:
        try:
            return self.sessions[graph].run(feeds)
        except Exception as e:
            raise RuntimeError(f"TensorRT failed in {graph}: {e}") from e
