"""kairos eval-bag on a bag recorded from the simulated expert: the committed model predicts the
motion that really followed better than holding still, imagined frames are scored, a report is
written; a bag without the needed topics is an error that lists what it holds."""
import json

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState

from kairos_ros.core.recorder import EpisodeRecorder, RecorderConfig
from kairos_sim.metaworld_sim import JOINT_NAMES, MetaWorldSim, SimConfig, rollout_expert
from training.data.lerobot import DatasetError
from training.eval_bag import main

S = 1_000_000_000


@pytest.fixture(scope="module")
def expert_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    with MetaWorldSim(SimConfig(task="button-press-topdown-v3")) as sim:
        frames, joints, _, ok = rollout_expert(sim, variation=10_050)
        instruction = sim.instruction
    assert ok
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(root), min_free_mb=0))
    name = rec.start_episode(task=instruction)
    for i, (f, q) in enumerate(zip(frames, joints)):
        t = S + i * S // 10
        rec.write("/camera/image_raw", "sensor_msgs/msg/Image", t,
                  serialize_message(Image(height=64, width=64, encoding="rgb8", step=192, data=f.tobytes())))
        rec.write("/joint_states", "sensor_msgs/msg/JointState", t,
                  serialize_message(JointState(name=JOINT_NAMES, position=[float(x) for x in q])))
    rec.end_episode(success=True)
    return root / name


def test_eval_bag_scores_the_committed_model(expert_bag, tmp_path):
    assert main([str(expert_bag), "--artifact", "artifacts/tiny_button_press", "--report", str(tmp_path)]) == 0
    r = json.load(open(tmp_path / "report.json"))[0]
    assert r["action_mae_rad"] < 0.5 * r["hold_baseline_mae_rad"], r
    assert len(r["future_psnr_db_per_step"]) == 2 and all(np.isfinite(r["future_psnr_db_per_step"]))
    assert 0 < r["future_ssim_per_step"][0] <= 1
    assert (tmp_path / "report.html").is_file() and (tmp_path / "metrics.png").is_file()


def test_a_bag_without_a_camera_lists_what_it_holds(tmp_path):
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path), min_free_mb=0))
    name = rec.start_episode()
    rec.write("/joint_states", "sensor_msgs/msg/JointState", 0,
              serialize_message(JointState(name=JOINT_NAMES, position=[0.0] * 8)))
    rec.end_episode()
    with pytest.raises(DatasetError, match=r"holds .*JointState"):
        main([str(tmp_path / name), "--artifact", "artifacts/tiny_button_press", "--report", str(tmp_path / "r")])


def test_eval_bag_exports_a_checkpoint_once_for_the_onnx_backend(expert_bag, tmp_path, monkeypatch, exported_default):
    """--backend onnx on a plain checkpoint exports it once into the export cache (as the act node and
    kairos evaluate do) instead of refusing it; the student is sampled at its own step count."""
    exported, root = exported_default                       # the main job's student, exported by the fixture
    monkeypatch.setenv("KAIROS_EXPORT_CACHE", root)
    student = "artifacts/tiny_button_press_student"
    assert main([str(expert_bag), "--artifact", student, "--backend", "onnx", "--report", str(tmp_path)]) == 0
    r = json.load(open(tmp_path / "report.json"))[0]
    assert r["action_mae_rad"] < 0.5 * r["hold_baseline_mae_rad"], r
    assert r["sampler_steps"] == 1                          # the student's own count, not the old default 4
