"""Few-step distillation: a short run of consistency distillation + DMD brings the 4-step student's
samples closer to the 40-step teacher's ODE solution than the teacher's own 4-step samples are, and
writes a normal checkpoint that loads (and exports) like any other."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from kairos_model.checkpoint import build_parts, load_checkpoint, save_checkpoint
from kairos_model.world_model import WorldModelConfig
from training.data.lerobot import Episode, LeRobotWriter

pytestmark = pytest.mark.slow
NAMES = ["a", "b", "c"]


def make_dataset(root, episodes=3, T=10):
    rng = np.random.default_rng(0)
    with LeRobotWriter(str(root), fps=10, state_names=NAMES, action_names=NAMES) as w:
        for i in range(episodes):
            frames = np.zeros((T, 64, 64, 3), np.uint8)
            for t in range(T):                                   # a square that moves: a little dynamics
                frames[t, 20:36, 4 * t:4 * t + 16] = 220
            q = np.cumsum(rng.normal(scale=0.1, size=(T, 3)), 0).astype(np.float32)
            w.add(Episode({"observation.images.cam": frames}, q, np.roll(q, -1, 0), "push the square", success=True))


def make_teacher(path):
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny", action_dim=3, proprio_dim=3)
    parts = build_parts(cfg)
    wm = parts["world_model"]
    with torch.no_grad():      # an untrained model's zero-initialised output layers would give a trivial flow
        for final in (wm.video_out, wm.act_out):
            nn.init.normal_(final.lin.weight, std=0.3)
            nn.init.normal_(final.ada.weight, std=0.3)
    meta = {"joint_names": NAMES, "latent_scale": 1.0, "proprio": {"mean": [0.0] * 3, "std": [1.0] * 3},
            "actions": {"mean": [0.0] * 3, "std": [1.0] * 3}, "instructions": ["push the square"]}
    save_checkpoint(str(path), cfg, parts, meta=meta)


@torch.no_grad()
def sampler_gap(wm, teacher, tr, batch, steps):
    """Mean squared distance of wm's `steps`-step samples to the teacher's 40-step ones (same noise)."""
    lat, und = tr.latents(batch.frames), tr.und_tokens(batch.frames, batch.texts)
    anchors = torch.arange(lat.shape[1] - wm.cfg.future_frames)
    ctx_t, _ = teacher.encode_context(lat, batch.proprio, und)
    ref_f, ref_a = teacher.sample(ctx_t, anchors, steps=40, generator=torch.Generator().manual_seed(1))
    ctx, _ = wm.encode_context(lat, batch.proprio, und)
    f, a = wm.sample(ctx, anchors, steps=steps, generator=torch.Generator().manual_seed(1))
    return float(((f - ref_f) ** 2).mean() + ((a - ref_a) ** 2).mean())


def test_distillation_brings_the_4_step_student_toward_the_40_step_teacher(tmp_path):
    from training.data.lerobot import JointMapping, LeRobotDataset
    from training.data.sources import EpisodeSource, Normalization
    from training.distill import DistillConfig, distill
    from training.trainer import WorldModelTrainable
    make_dataset(tmp_path / "ds")
    make_teacher(tmp_path / "teacher")
    info = distill(DistillConfig(teacher=str(tmp_path / "teacher"), out=str(tmp_path / "run"), data=str(tmp_path / "ds"),
                                 steps=30, minutes=10, batch=2, frames=6, anchors=2, lr=5e-4, fake_lr=5e-4,
                                 dmd_after=10, teacher_substeps=10), progress=False)
    assert info["iterations"] == 30 and info["teacher_steps"] == 40
    _, teacher_parts = load_checkpoint(str(tmp_path / "teacher"))
    _, student_parts = load_checkpoint(str(tmp_path / "run" / "artifact"))
    meta = json.load(open(tmp_path / "run" / "artifact" / "config.json"))["meta"]
    assert meta["sampler_steps"] == 4 and meta["distilled"]["student_steps"] == 4
    assert meta["joint_names"] == NAMES                      # the teacher's meta travels with the student
    assert meta["arithmetic"]["torch_threads"] == torch.get_num_threads()     # this run's, for reruns
    teacher = teacher_parts["world_model"].eval()
    tr = WorldModelTrainable(teacher_parts, teacher_parts["vae"], 1.0)
    ds = list(LeRobotDataset(str(tmp_path / "ds"), mapping=JointMapping(NAMES)))
    norm = Normalization(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3))
    batch = EpisodeSource(ds, 64, teacher.cfg.action_horizon, norm, True).sample(np.random.default_rng(5), 3, 6)
    gap_teacher4 = sampler_gap(teacher, teacher, tr, batch, 4)
    gap_student4 = sampler_gap(student_parts["world_model"].eval(), teacher, tr, batch, 4)
    assert gap_student4 < 0.8 * gap_teacher4, (gap_student4, gap_teacher4)


def test_distill_recipe_is_strict(tmp_path):
    from training.distill import DistillConfig
    p = tmp_path / "r.yaml"
    p.write_text("teacher: x\nout: y\nsteps: 3\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown keys \\['learning_rate'\\]"):
        DistillConfig.load(str(p))
    assert DistillConfig.load("training/recipes/distill_tiny.yaml").student_steps == 4
    mt10 = DistillConfig.load("training/recipes/distill_mt10_cpu.yaml")
    assert len(mt10.tasks) == 10 and mt10.minutes <= 20 and mt10.student_steps == 4


def test_the_main_job_runs_the_committed_teachers_one_step_student():
    """config/sim_act.yaml (the main job) runs the committed student at the step count it was distilled
    for (sampler_steps 0: the one the artifact records); the student is the committed teacher's: the same VAE and encoder files byte for byte (the
    manifests' sha256), its own world model, and `make distill-tiny`'s recipe rebuilds it in <= 20 min."""
    import yaml
    from training.distill import DistillConfig
    with open("config/sim_act.yaml") as f:
        act = yaml.safe_load(f)["kairos_act"]["ros__parameters"]
    from kairos_model.engine import artifact_sampler_steps
    student_dir = act["artifact"]
    assert act["sampler_steps"] == 0                           # the artifact's own count
    load_checkpoint(student_dir)                               # verifies every file against its manifest
    meta = json.load(open(f"{student_dir}/config.json"))["meta"]
    assert meta["distilled"]["student_steps"] == meta["sampler_steps"] == artifact_sampler_steps(student_dir) == 1
    assert meta["distilled"]["teacher_steps"] == 40
    recipe = DistillConfig.load("training/recipes/distill_tiny_1step.yaml")
    assert recipe.student_steps == 1 and recipe.teacher_substeps == 40 and recipe.minutes <= 20
    assert meta["distilled"]["teacher"].endswith(recipe.teacher)
    student = json.load(open(f"{student_dir}/manifest.json"))
    teacher = json.load(open(f"{recipe.teacher}/manifest.json"))
    assert "distill_tiny_1step.yaml" in student["rebuild"]
    for part in ("vae.safetensors", "understanding.safetensors"):
        assert student["files"][part] == teacher["files"][part], part
    assert student["files"]["world_model.safetensors"] != teacher["files"]["world_model.safetensors"]
