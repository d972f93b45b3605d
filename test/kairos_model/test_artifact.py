"""Artifacts: the committed default model loads and verifies; a tampered, truncated or unlisted file
is refused with a clear error."""
import json
import shutil

import numpy as np
import pytest
import torch

from kairos_model.checkpoint import build_parts, save_checkpoint
from kairos_model.engine import Observation, load_engine
from kairos_model.world_model import WorldModelConfig
from training.package_artifact import package

DEFAULT = "artifacts/tiny_button_press"


def test_the_committed_default_artifact_loads_and_acts():
    m = load_engine(DEFAULT)
    assert m.joint_names[-1] == "r_close" and len(m.joint_names) == 8
    assert m.meta["metrics"]["actions"]["action_mae_rad"] < m.meta["metrics"]["actions"]["mean_action_mae_rad"]
    pred = m.engine.step(Observation(np.zeros((64, 64, 3), np.uint8), np.zeros(8), m.meta["instructions"][0]))
    assert pred.actions.shape == (8, 8) and np.isfinite(pred.actions).all()


@pytest.fixture()
def artifact(tmp_path):
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny")
    save_checkpoint(str(tmp_path / "ckpt"), cfg, build_parts(cfg), meta={"joint_names": [f"j{i}" for i in range(7)]})
    package(str(tmp_path / "ckpt"), str(tmp_path / "art"), half=True, rebuild="test")
    return tmp_path / "art"


def test_a_packaged_artifact_verifies_and_loads_in_float32(artifact):
    m = load_engine(str(artifact))
    assert next(m.engine.model.parameters()).dtype == torch.float32
    assert json.load(open(artifact / "manifest.json"))["weights_dtype"] == "float16"


@pytest.mark.parametrize("damage", ["tamper", "truncate", "remove", "extra"])
def test_a_damaged_artifact_is_refused(artifact, damage):
    f = artifact / "world_model.safetensors"
    if damage == "tamper":
        data = bytearray(f.read_bytes())
        data[-10] ^= 0xFF
        f.write_bytes(bytes(data))
        match = "does not match its sha256"
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:1000])
        match = "does not match its sha256"
    elif damage == "remove":
        f.unlink()
        match = "missing"
    else:
        shutil.copy(f, artifact / "extra.safetensors")
        match = "not listed"
    with pytest.raises(ValueError, match=match):
        load_engine(str(artifact))
