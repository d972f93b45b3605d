"""bench/onnx_profile.py: per-stage times of torch and onnxruntime on one stream, and the per-operator
kernel time of one exported graph from onnxruntime's profiler."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_onnx_profile_splits_stages_and_operators(tmp_path, capsys, exported_default):
    import onnx_profile
    import torch
    threads = torch.get_num_threads()
    path, _ = exported_default
    out = tmp_path / "profile.json"
    assert onnx_profile.main(["--artifact", path, "--rounds", "1", "--steps", "3", "--warmup", "1",
                              "--threads", "1", "--profile-runs", "3", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    for backend in ("torch", "onnx"):
        (row,) = doc["stages_ms"][backend]
        assert {"vae_encode", "memory_update", "sampler"} <= set(row) and all(v >= 0 for v in row.values())
        assert row["sampler"] > 0
    ops = doc["ops_ms_nodes"]
    assert "MatMul" in ops and all(n > 0 for _, n in ops.values())          # the denoise graph's matrix products
    assert abs(sum(t for t, _ in ops.values()) - doc["kernel_ms"]) < 1e-6 and doc["kernel_ms"] > 0
    assert torch.get_num_threads() == threads
    assert "denoise_step: onnxruntime kernel time per run" in capsys.readouterr().out
