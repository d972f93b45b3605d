"""A world model with a keypoint token (recipe `keypoints_from`): the trainer puts a keypoint artifact's
net into the understanding encoder, frozen, on top of a pretrained artifact; the result runs on the
torch engine and exports to ONNX with the keypoint net inside, agreeing with torch."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

JOINTS = ["right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5", "right_j6", "r_close"]


def keypoint_artifact(path, camera="workspace", tasks=("reach-v3",)):
    """An (untrained) keypoint artifact for `camera`'s frames: the plumbing, not the skill."""
    from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig
    from training.perception import KeypointConfig, KeypointNet, save_keypoints
    torch.manual_seed(0)
    with MetaWorldSim(SimConfig(task=tasks[0], camera=camera)) as sim:
        cam = sim.camera_model()
    net = KeypointNet(KeypointConfig(tasks=list(tasks), image_size=64, width=8))
    save_keypoints(str(path), net, cam, {"camera_name": camera})
    return net


def test_keypoints_from_a_mismatched_camera_or_a_non_artifact_is_refused(tmp_path):
    from kairos_model.understanding import UnderstandingConfig, UnderstandingEncoder
    from training.recipe import RecipeConfig
    from training.trainer import load_keypoints, model_config
    keypoint_artifact(tmp_path / "kp")
    r = RecipeConfig(name="r", model={"action_dim": 8, "proprio_dim": 8}, keypoints_from=str(tmp_path / "kp"))
    cfg = model_config(r)
    assert cfg.und.keypoint_tasks == ["reach-v3"] and cfg.und.keypoint_width == 8
    und = UnderstandingEncoder(cfg.und)
    with pytest.raises(ValueError, match="'workspace' camera"):
        load_keypoints(und, r, ["corner2"])
    load_keypoints(und, r, ["workspace"])
    assert not any(p.requires_grad for p in und.image.keypoints.parameters())
    with pytest.raises(FileNotFoundError, match="goal_pixels"):
        model_config(RecipeConfig(name="r", keypoints_from=str(tmp_path)))


@pytest.mark.slow
@pytest.mark.parametrize("select", [False, True], ids=["all_readings", "instructed_task"])
def test_a_keypoint_world_model_trains_from_an_artifact_runs_and_exports(tmp_path, select):
    import yaml
    from kairos_model.engine import Observation, load_engine
    from safetensors.torch import load_file
    from training.export import export_artifact
    net = keypoint_artifact(tmp_path / "kp", tasks=("reach-v3", "push-v3"))
    model = {"action_dim": 8, "proprio_dim": 8, **({"und": {"keypoint_select": True}} if select else {})}
    recipe = {"name": "kp", "preset": "tiny", "model": model,
              "joint_names": JOINTS, "out": str(tmp_path / "run"), "init_from": "artifacts/tiny_button_press",
              "keypoints_from": str(tmp_path / "kp"), "renormalize": True, "eval_episodes": 1,
              "stages": [{"name": "III", "objective": "video+action", "steps": 3, "batch": 2, "frames": [5],
                          "warmup": 1,
                          "sources": [{"kind": "sim_expert", "tasks": ["reach-v3"], "episodes": 2, "actions": True,
                                       "camera": "workspace", "path": str(tmp_path / "demos")}]}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = subprocess.run([sys.executable, "-m", "training.trainer", str(tmp_path / "r.yaml")], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    art = tmp_path / "run" / "artifact"
    und_cfg = json.load(open(art / "config.json"))["world_model"]["und"]
    assert und_cfg["keypoint_tasks"] == ["reach-v3", "push-v3"] and und_cfg["keypoint_select"] == select
    # the keypoint net is the artifact's, unchanged by training (frozen, and EMA of a constant)
    from kairos_model.checkpoint import load_checkpoint
    _, parts = load_checkpoint(str(art))
    for k, v in net.state_dict().items():
        torch.testing.assert_close(parts["understanding"].image.keypoints.state_dict()[k].float(), v.float(),
                                   rtol=1e-3, atol=1e-3)
    t = load_engine(str(art), backend="torch", sampler_steps=2).engine
    assert t.cfg.und.tokens == t.cfg.und.text_tokens + t.cfg.und.image_tokens + 1
    assert t.cfg.und.image_out_tokens == t.cfg.und.image_tokens + (2 if select else 1)
    onnx_dir = tmp_path / "onnx"
    export_artifact(str(art), str(onnx_dir), backend="onnx")
    o = load_engine(str(onnx_dir), backend="onnx", sampler_steps=2, providers=["CPUExecutionProvider"]).engine
    rng = np.random.default_rng(0)
    seq = [Observation(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8), rng.normal(0, 0.1, 8),
                       "reach the red goal") for _ in range(5)]
    for obs in seq:
        np.testing.assert_allclose(t.step(obs).actions, o.step(obs).actions, atol=1e-3)
    # keypoint_hold: the torch engine (override) and graphs exported with it agree step by step,
    # the held readings being streaming state of both; the exported config says so
    th = load_engine(str(art), backend="torch", sampler_steps=2, keypoint_hold=True).engine
    export_artifact(str(art), str(tmp_path / "onnx_hold"), backend="onnx", keypoint_hold=True)
    assert json.load(open(tmp_path / "onnx_hold" / "config.json"))["world_model"]["und"]["keypoint_hold"]
    oh = load_engine(str(tmp_path / "onnx_hold"), backend="onnx", sampler_steps=2,
                     providers=["CPUExecutionProvider"]).engine
    with pytest.raises(ValueError, match="exported with keypoint_hold=True"):
        load_engine(str(tmp_path / "onnx_hold"), backend="onnx", keypoint_hold=False)
    for obs in seq:
        np.testing.assert_allclose(th.step(obs).actions, oh.step(obs).actions, atol=1e-3)
        np.testing.assert_allclose(th._kp_hold[0].numpy(), oh._kp_hold["kp_held"], atol=1e-4)
    assert oh.state_bytes() > o.state_bytes()
    oh.reset()
    assert not oh._kp_hold["kp_held_conf"].any()


def test_the_instructed_task_keypoint_token_is_gated_by_the_instruction():
    """keypoint_select: one keypoint token per task out of the image encoder; combine() hands the
    world model one of them, chosen by the instruction (a gate that learns task from text)."""
    from kairos_model.understanding import UnderstandingConfig, UnderstandingEncoder
    tasks = ["reach-v3", "push-v3", "peg-insert-side-v3"]
    texts = ["reach the red goal", "push the puck to the goal", "insert the peg into the hole"]
    torch.manual_seed(0)
    cfg = UnderstandingConfig(dim=32, text_heads=4, image_channels=8, keypoint_tasks=tasks,
                              keypoint_image_size=32, keypoint_width=8, keypoint_select=True)
    und = UnderstandingEncoder(cfg).eval()
    img = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        image_tokens = und.encode_image(img)
        text_tokens = und.encode_text(texts)
    assert image_tokens.shape == (3, cfg.image_tokens + 3, 32) and cfg.image_out_tokens == cfg.image_tokens + 3
    out = und.combine(text_tokens, image_tokens)
    assert out.shape == (3, cfg.tokens, 32) and cfg.tokens == cfg.text_tokens + cfg.image_tokens + 1
    # a frame sequence [B, T, Mi, C] takes the same text per frame
    seq = und.combine(text_tokens, image_tokens[:, None].expand(3, 2, -1, -1))
    torch.testing.assert_close(seq[:, 1], out)
    # the per-task token is that task's readings only: change another task's heatmaps, it stays
    with torch.no_grad():
        und.image.keypoints.heat.weight[2:] += torch.randn_like(und.image.keypoints.heat.weight[2:])  # push, peg
        again = und.encode_image(img)
    torch.testing.assert_close(again[:, cfg.image_tokens], image_tokens[:, cfg.image_tokens])
    assert not torch.allclose(again[:, cfg.image_tokens + 2], image_tokens[:, cfg.image_tokens + 2])
    # the gate learns to pick instruction i's task (only the gate trains here)
    opt = torch.optim.Adam(und.keypoint_gate.parameters(), lr=0.05)
    target = torch.arange(3)
    for _ in range(100):
        w = und.keypoint_weights(text_tokens)
        loss = -torch.log(w[target, target]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w = und.keypoint_weights(text_tokens)
        out = und.combine(text_tokens, image_tokens)
    assert (w.diagonal() > 0.95).all(), w
    torch.testing.assert_close(out[:, -1], image_tokens[target, cfg.image_tokens + target], atol=0.1, rtol=0)


def test_the_gate_loss_teaches_the_keypoint_gate_the_instructed_task(tmp_path):
    """A stage's gate_weight: the trainer's cross-entropy takes the gate to the task each
    instruction names; instructions of no keypoint task add nothing."""
    from kairos_model.understanding import UnderstandingEncoder
    from kairos_sim.metaworld_sim import INSTRUCTIONS
    from training.recipe import RecipeConfig
    from kairos_model.checkpoint import build_parts
    from training.trainer import WorldModelTrainable, model_config
    tasks = ("reach-v3", "push-v3", "peg-insert-side-v3")
    keypoint_artifact(tmp_path / "kp", tasks=tasks)
    r = RecipeConfig(name="r", model={"action_dim": 8, "proprio_dim": 8, "und": {"keypoint_select": True}},
                     keypoints_from=str(tmp_path / "kp"))
    cfg = model_config(r)
    parts = build_parts(cfg)
    tr = WorldModelTrainable(parts, parts["vae"], 1.0)
    assert tr.gate_loss(["an instruction of no keypoint task"]) is None
    texts = [INSTRUCTIONS[t] for t in tasks] + ["an instruction of no keypoint task"]
    opt = torch.optim.Adam(tr.und.parameters(), lr=3e-3)
    first = float(tr.gate_loss(texts))
    for _ in range(60):
        loss = tr.gate_loss(texts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w = tr.und.keypoint_weights(tr.und.encode_text(texts[:3]))
    assert first > 0.9 and float(tr.gate_loss(texts)) < 0.1
    assert (w.argmax(1) == torch.arange(3)).all() and (w.diagonal() > 0.9).all(), w
    # the experiment that reads a trained artifact's gate reports the same
    from kairos_model.checkpoint import save_checkpoint
    from training.experiments.keypoint_gate import gate_table
    save_checkpoint(str(tmp_path / "art"), cfg, parts)
    table = gate_table(str(tmp_path / "art"))
    assert all(r["top"] == t and r["own_weight"] > 0.9 for t, r in table.items()), table
    # without keypoint_select the loss is refused with a clear error
    plain = UnderstandingEncoder(model_config(RecipeConfig(name="r", keypoints_from=str(tmp_path / "kp"))).und)
    tr.und = plain
    with pytest.raises(ValueError, match="keypoint_select"):
        tr.gate_loss(texts)
