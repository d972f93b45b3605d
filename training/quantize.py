"""Quantized variants of an exported artifact's graphs (onnxruntime's own quantization tools):

- int8: dynamic quantization (int8 weights, activations quantized per call) of the MatMul/Gemm
  weights of the world-model graphs, context_step and denoise_step, where most of the weights are;
  onnxruntime runs it on CPU (MatMulInteger / DynamicQuantizeLinear).
- int4-text: weight-only 4-bit block quantization (MatMulNBits, block 32, symmetric) of the text
  encoder, the paper's choice for its language model.

The float graphs stay in the artifact; the quantized ones sit beside them (`<graph>.int8.onnx`,
`text_encoder.int4.onnx`) and the manifest's "quantized" section maps graph -> file. A runtime asks
for them with quantized=True (the act node's `quantized` parameter). Their quality cost against the
float model is measured by bench/backends.py and the tests.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Sequence


def quantize_graphs(artifact_dir: str, graphs: Dict[str, dict], kinds: Sequence[str]) -> Dict[str, dict]:
    """Write the quantized graphs into artifact_dir; returns {graph: {"file", "method"}}."""
    root = logging.getLogger()            # the quantizers log every tensor at INFO on the root logger
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        return _quantize(artifact_dir, graphs, kinds)
    finally:
        root.setLevel(level)


def _quantize(artifact_dir, graphs, kinds):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    out = {}
    for kind in kinds:
        if kind == "int8":
            for g in ("context_step", "denoise_step"):
                src = os.path.join(artifact_dir, graphs[g]["file"])
                dst = os.path.join(artifact_dir, f"{g}.int8.onnx")
                quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                                 per_channel=False)
                out[g] = {"file": os.path.basename(dst), "method": "dynamic int8 (MatMul/Gemm weights)"}
        elif kind == "int4-text":
            src = os.path.join(artifact_dir, graphs["text_encoder"]["file"])
            dst = os.path.join(artifact_dir, "text_encoder.int4.onnx")
            q = MatMulNBitsQuantizer(onnx.load(src), algo_config=DefaultWeightOnlyQuantConfig(
                block_size=32, is_symmetric=True, bits=4))
            q.process()
            q.model.save_model_to_file(dst, use_external_data_format=False)
            out["text_encoder"] = {"file": os.path.basename(dst), "method": "weight-only int4 (MatMulNBits, block 32)"}
        else:
            raise ValueError(f"unknown quantization {kind!r}; expected 'int8' or 'int4-text'")
    return out
