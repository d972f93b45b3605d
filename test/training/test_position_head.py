"""The world model's position head (a stage's aux_weight) and labelled-scene (snapshot) datasets: the
head learns where an object is from the understanding encoder's image tokens, a snapshot dataset is
refused anywhere but an aux_only source, and a recipe with both trains, evaluates the head on held-out
episodes and records its camera for `kairos evaluate`."""
import json

import numpy as np
import pytest
import torch

from training.data.lerobot import DatasetError, Episode, LeRobotWriter
from training.data.sources import Batch, EnvNormalization, PositionSource
from training.recipe import SourceConfig, recipe_from_dict

JOINTS = ["right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5", "right_j6", "r_close"]


def dot_episode(rng, T=6, size=64):
    """Frames with one bright square at a random place per frame; env_state = its (x, y) in [0, 1]."""
    xy = rng.uniform(0.15, 0.85, (T, 2))
    frames = np.zeros((T, size, size, 3), np.uint8)
    for t, (x, y) in enumerate(xy):
        cx, cy = int(x * size), int(y * size)
        frames[t, cy - 3:cy + 3, cx - 3:cx + 3] = 255
    z = np.zeros((T, 8), np.float32)
    return Episode({"observation.images.cam": frames}, z, z, "find the dot", env_state=xy.astype(np.float32))


def write_dots(root, n, rng, snapshots=False):
    with LeRobotWriter(str(root), fps=10, state_names=JOINTS, action_names=JOINTS, image_shape=(64, 64, 3),
                       env_state_names=["dot_x", "dot_y"], kairos_info={"snapshots": snapshots}) as w:
        for _ in range(n):
            w.add(dot_episode(rng))


def tiny_trainable():
    from kairos_model.checkpoint import build_parts
    from kairos_model.world_model import WorldModelConfig
    from training.trainer import PositionHead, WorldModelTrainable
    cfg = WorldModelConfig.preset("tiny", action_dim=8, proprio_dim=8)
    parts = build_parts(cfg)
    return WorldModelTrainable(parts, parts["vae"].eval().requires_grad_(False), 1.0,
                               PositionHead(cfg.und.image_tokens, cfg.dim, 2))


def test_the_position_loss_joins_the_world_model_loss_and_reaches_the_image_encoder():
    """forward with aux_weight w: loss = the world model's loss + w * the position loss (on the clips'
    frames and the aux_only frames), and its gradient reaches the understanding encoder's CNN; without
    aux_weight the head is not used."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tr = tiny_trainable()
    eps = [dot_episode(rng) for _ in range(8)]
    env_norm = EnvNormalization.from_episodes(["dot_x", "dot_y"], eps)
    frames = torch.stack([torch.from_numpy(e.frames["observation.images.cam"][:5]).permute(0, 3, 1, 2).float() / 255
                          for e in eps[:2]])
    env = torch.stack([torch.from_numpy(env_norm.apply(e.env_state[:5])).float() for e in eps[:2]])
    b = Batch(frames, ["find the dot"] * 2, torch.zeros(2, 5, 8), None, torch.ones(2, 5, dtype=torch.bool), env)
    aux = PositionSource(eps, 64, env_norm).sample(rng, 4)
    plain, parts0 = tr(b, torch.Generator().manual_seed(3), False)
    assert "position" not in parts0
    loss, parts = tr(b, torch.Generator().manual_seed(3), False, aux_weight=0.5, aux=aux)
    torch.testing.assert_close(loss, plain + 0.5 * parts["position"], rtol=1e-5, atol=1e-6)
    assert 0.2 < float(parts["position"]) < 10
    tr.zero_grad()
    (loss - plain).backward()
    g = tr.und.image.net[0].weight.grad
    assert g is not None and g.abs().sum() > 0
    assert tr.wm.blocks[0].parts["video"].qkv.weight.grad is None or \
        tr.wm.blocks[0].parts["video"].qkv.weight.grad.abs().sum() == 0   # the head does not train the DiT


def test_the_image_tokens_learn_where_an_object_is():
    """Through the understanding encoder's attention-pooled image tokens alone, the position head
    locates a dot: the loss falls from the mean predictor's ~1 to well below it."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tr = tiny_trainable()
    eps = [dot_episode(rng) for _ in range(48)]
    src = PositionSource(eps, 64, EnvNormalization.from_episodes(["dot_x", "dot_y"], eps))
    opt = torch.optim.AdamW(list(tr.und.parameters()) + list(tr.pos_head.parameters()), lr=5e-4)
    losses = []
    for _ in range(400):
        f, e, _ = src.sample(rng, 32)
        loss = (tr.positions(f) - e).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[:10]) > 0.8 and np.mean(losses[-20:]) < 0.5, (losses[:10], losses[-20:])


def test_a_snapshot_dataset_only_feeds_the_position_loss(tmp_path):
    from training.trainer import Dist, open_dataset
    rng = np.random.default_rng(1)
    write_dots(tmp_path / "snap", 2, rng, snapshots=True)
    src = SourceConfig(kind="lerobot", path=str(tmp_path / "snap"), actions=True)
    with pytest.raises(DatasetError, match="snapshot dataset"):
        open_dataset(src, str(tmp_path), JOINTS, Dist())
    ds = open_dataset(SourceConfig(kind="lerobot", path=str(tmp_path / "snap"), aux_only=True), str(tmp_path),
                      JOINTS, Dist())
    assert ds.snapshots and ds.env_state_names == ["dot_x", "dot_y"]
    write_dots(tmp_path / "demos", 3, rng)
    asked = SourceConfig(kind="sim_expert", path=str(tmp_path / "demos"), tasks=["reach-v3"], actions=True, episodes=2)
    with pytest.raises(DatasetError, match="holds 3 episodes, more than the source's 2 per task"):
        open_dataset(asked, str(tmp_path), JOINTS, Dist())
    asked.episodes = 3
    assert len(open_dataset(asked, str(tmp_path), JOINTS, Dist())) == 3
    stage = {"name": "III", "objective": "video+action", "steps": 1,
             "sources": [{"kind": "lerobot", "path": "x", "actions": True},
                         {"kind": "lerobot", "path": "y", "aux_only": True}]}
    with pytest.raises(ValueError, match="aux_weight"):             # aux_only data with no loss to feed
        recipe_from_dict({"name": "r", "stages": [stage]})
    only_aux = {**stage, "aux_weight": 1.0, "sources": stage["sources"][1:]}
    with pytest.raises(ValueError, match="every source is aux_only"):
        recipe_from_dict({"name": "r", "stages": [only_aux]})


@pytest.mark.slow
def test_a_recipe_with_labelled_scenes_trains_evaluates_its_head_and_records_its_camera(tmp_path):
    """Stage III on two workspace-camera demonstrations plus `kairos collect --snapshots` scenes with
    aux_weight: the trainer logs the position loss, reports the head's held-out error in cm beside the
    mean baseline, and the artifact's meta names the camera, which `kairos evaluate` then uses."""
    import subprocess
    import sys

    import yaml
    from training.collect import collect
    from training.data.lerobot import LeRobotDataset
    task = "reach-v3"
    collect([task], 3, str(tmp_path / "scenes"), first_variation=100000, max_steps=4, camera="workspace",
            progress=False, snapshots=True)
    snap = LeRobotDataset(str(tmp_path / "scenes"))
    assert snap.snapshots and snap.kairos_info["camera"] == "workspace" and len(snap) == 1
    ep = snap.episode(0)
    assert len(ep.state) == 3 and len(np.unique(ep.env_state[:, 3])) == 3      # three scenes, three goals
    demos = {"kind": "sim_expert", "tasks": [task], "episodes": 2, "actions": True, "camera": "workspace",
             "path": str(tmp_path / "demos")}
    recipe = {"name": "aux", "preset": "tiny", "model": {"action_dim": 8, "proprio_dim": 8},
              "joint_names": JOINTS, "out": str(tmp_path / "run"), "init_from": "artifacts/tiny_button_press",
              "renormalize": True, "eval_episodes": 1, "checkpoint_every": 100,
              "stages": [{"name": "III", "objective": "video+action", "steps": 3, "batch": 2, "frames": [5],
                          "warmup": 1, "aux_weight": 1.0, "aux_batch": 4,
                          "sources": [demos, {"kind": "lerobot", "path": str(tmp_path / "scenes"), "aux_only": True}]}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = subprocess.run([sys.executable, "-m", "training.trainer", str(tmp_path / "r.yaml")], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "position=" in r.stderr.replace("\r", "\n")                # the progress bar shows the loss
    assert "position head" in r.stdout
    m = json.load(open(tmp_path / "run" / "metrics.json"))
    pos = m["positions"]
    assert set(pos["error_cm"]) == set(pos["first_frame_error_cm"]) == {"object", "goal"} and pos["frames"] > 0
    assert all(np.isfinite(v) and v > 0 for v in pos["error_cm"].values())
    meta = json.load(open(tmp_path / "run" / "artifact" / "config.json"))["meta"]
    assert meta["camera"] == "workspace"
    assert meta["arithmetic"]["torch_threads"] >= 1 and meta["arithmetic"]["cpu"]     # what a rerun must match
    held = LeRobotDataset(str(next((tmp_path / "run" / "data").iterdir())))
    assert held.kairos_info["camera"] == "workspace"                       # held out from the same camera
    from training.evaluate import evaluate
    per_task, *_ = evaluate(str(tmp_path / "run" / "artifact"), [task], 1, max_steps=3, progress=False)
    assert len(per_task[task]) == 1
