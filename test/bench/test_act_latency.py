"""bench/act_latency.py runs end to end on an untrained tiny model and reports every (backend, threads,
history) it was asked for, with the per-stage breakdown and the state size."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_act_latency_bench_reports_each_thread_count_and_history(tmp_path, capsys):
    import act_latency
    import torch
    threads = torch.get_num_threads()
    out = tmp_path / "lat.json"
    assert act_latency.main(["--artifact", "", "--threads", "1", "2", "--histories", "0", "3", "--ticks", "2",
                             "--camera", "48", "64", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert sorted(res) == ["torch/1t/0", "torch/1t/3", "torch/2t/0", "torch/2t/3"]
    for r in res.values():
        assert 0 < r["p50"] <= r["p99"]
        assert {"image", "vae_encode", "memory_update", "sampler"} <= set(r)
        assert r["state_mb"] > 0
    text = capsys.readouterr().out
    assert "torch 2t vs torch 1t" in text and "fastest: torch" in text
    assert torch.get_num_threads() == threads          # the 2-thread variant does not leak into the worker
