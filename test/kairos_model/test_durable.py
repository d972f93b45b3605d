"""Crash-safe writes (kairos_model.durable): a checkpoint, a packaged artifact or an exported one that
fails half-way leaves the previous version whole, and a complete one replaces it whole."""
import json
import os

import pytest
import torch

import kairos_model.checkpoint as ckpt
from kairos_model.checkpoint import build_parts, load_checkpoint, save_checkpoint
from kairos_model.durable import staged_dir, write_text_atomic
from kairos_model.world_model import WorldModelConfig


def _parts(seed):
    torch.manual_seed(seed)
    return build_parts(WorldModelConfig.preset("tiny"))


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_checkpoint_write_that_fails_half_way_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    cfg, path = WorldModelConfig.preset("tiny"), str(tmp_path / "art")
    old, new = _parts(0), _parts(1)
    save_checkpoint(path, cfg, old)
    real, calls = ckpt.save_file, []

    def dies_on_the_second_part(tensors, file):
        calls.append(file)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        real(tensors, file)

    monkeypatch.setattr(ckpt, "save_file", dies_on_the_second_part)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, cfg, new)
    assert all(not os.path.dirname(f).endswith("/art") for f in calls), "written in place, not beside"
    monkeypatch.setattr(ckpt, "save_file", real)
    _, loaded = load_checkpoint(path)
    assert all(_same(loaded[k], old[k]) for k in old), "a part of the new checkpoint leaked into the old one"
    assert sorted(os.listdir(tmp_path)) == ["art"], "the half-written folder was left behind"


def test_a_complete_checkpoint_replaces_the_folder_whole(tmp_path):
    cfg, path = WorldModelConfig.preset("tiny"), str(tmp_path / "art")
    save_checkpoint(path, cfg, _parts(0))
    with open(os.path.join(path, "manifest.json"), "w") as f:      # a stale manifest from packaging
        json.dump({"files": {}}, f)
    new = _parts(1)
    save_checkpoint(path, cfg, new)
    assert "manifest.json" not in os.listdir(path)
    _, loaded = load_checkpoint(path)
    assert all(_same(loaded[k], new[k]) for k in new)
    assert sorted(os.listdir(tmp_path)) == ["art"]


def test_packaging_over_an_artifact_that_fails_keeps_the_old_one(tmp_path, monkeypatch):
    import training.package_artifact as pa
    cfg = WorldModelConfig.preset("tiny")
    save_checkpoint(str(tmp_path / "run"), cfg, _parts(0))
    out = str(tmp_path / "shipped")
    pa.package(str(tmp_path / "run"), out, half=True, rebuild="test")
    before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)}
    save_checkpoint(str(tmp_path / "run"), cfg, _parts(1))
    monkeypatch.setattr(pa, "sha256_file", lambda p: (_ for _ in ()).throw(OSError("killed (simulated)")))
    with pytest.raises(OSError, match="simulated"):
        pa.package(str(tmp_path / "run"), out, half=True, rebuild="test")
    assert {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)} == before
    load_checkpoint(out)                                           # its manifest still verifies
    assert sorted(os.listdir(tmp_path)) == ["run", "shipped"]


def test_a_forced_re_export_that_fails_keeps_the_old_artifact(tmp_path, monkeypatch):
    import training.export as ex
    save_checkpoint(str(tmp_path / "ckpt"), WorldModelConfig.preset("tiny"), _parts(0))
    out = tmp_path / "exported"
    out.mkdir()
    (out / "marker").write_text("the previous export")

    def fails(*a, **k):
        raise RuntimeError("onnx export failed (simulated)")

    monkeypatch.setattr(ex, "export_onnx_graphs", fails)
    with pytest.raises(RuntimeError, match="simulated"):
        ex.export_artifact(str(tmp_path / "ckpt"), str(out), force=True)
    assert (out / "marker").read_text() == "the previous export"
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "exported"]
    with pytest.raises(FileExistsError, match="--force"):
        ex.export_artifact(str(tmp_path / "ckpt"), str(out))


def test_staged_dir_and_atomic_text(tmp_path):
    dst = tmp_path / "d"
    with staged_dir(str(dst)) as tmp:
        os.makedirs(os.path.join(tmp, "sub"))
        open(os.path.join(tmp, "sub", "f"), "w").write("v1")
    assert (dst / "sub" / "f").read_text() == "v1"
    with pytest.raises(KeyError):
        with staged_dir(str(dst)) as tmp:
            open(os.path.join(tmp, "g"), "w").write("v2")
            raise KeyError("interrupted")
    assert sorted(os.listdir(dst)) == ["sub"] and sorted(os.listdir(tmp_path)) == ["d"]
    p = tmp_path / "m.json"
    write_text_atomic(str(p), "one")
    write_text_atomic(str(p), "two")
    assert p.read_text() == "two" and sorted(os.listdir(tmp_path)) == ["d", "m.json"]
