"""Stage-III data round trip: scripted expert on a task the default model never saw -> recorder
(rosbag2 mcap) -> kairos dataset from-bags -> short fine-tune from the committed artifact ->
kairos export (ONNX) -> kairos eval-bag on the onnx backend: the fine-tuned model's action error on the
recorded episodes is lower than before fine-tuning. And the same loop for another robot (other joint
names, another count) with new_embodiment: the joint layers start new, the rest is the artifact's.
(The same recorder on the live ROS graph, with sqlite3 storage, is exercised by
test/kairos_ros/test_sim_act_e2e.py.)"""
import json
import os
import subprocess
import sys

import pytest
import yaml

from training.experiments.new_embodiment import record_episodes


def kairos(*args):
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "kairos"), *args], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_record_convert_finetune_export_evaluate(tmp_path):
    bags = record_episodes(str(tmp_path / "bags"), "drawer-open-v3", [0, 1, 2])
    kairos("dataset", "from-bags", *bags, "--out", str(tmp_path / "ds"))
    recipe = yaml.safe_load(open("training/recipes/finetune.yaml"))
    recipe["stages"][0].update(steps=40, batch=4, frames=[8], warmup=5)
    recipe["checkpoint_every"] = 40
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(recipe))
    kairos("train", str(tmp_path / "ft.yaml"), "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"))
    kairos("export", str(tmp_path / "art"), "--checkpoint", str(tmp_path / "run" / "artifact"))
    kairos("verify", str(tmp_path / "art"), "--backend", "onnx")
    kairos("eval-bag", bags[0], "--artifact", recipe["init_from"], "--report", str(tmp_path / "before"))   # the start
    kairos("eval-bag", bags[0], "--artifact", str(tmp_path / "art"), "--backend", "onnx",
           "--report", str(tmp_path / "after"))
    before = json.load(open(tmp_path / "before" / "report.json"))[0]["action_mae_rad"]
    after = json.load(open(tmp_path / "after" / "report.json"))[0]["action_mae_rad"]
    assert after < 0.8 * before, (before, after)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_new_robot_fine_tunes_from_the_artifact_and_deploys(tmp_path):
    names = [f"arm_{i}" for i in range(6)] + ["wrist"]            # 7 joints, none of them the artifact's 8
    bags = record_episodes(str(tmp_path / "bags"), "drawer-open-v3", [0, 1], names)   # another robot, as far as the data can tell
    kairos("dataset", "from-bags", *bags, "--out", str(tmp_path / "ds"), "--joints", *names)
    recipe = yaml.safe_load(open("training/recipes/finetune.yaml"))
    recipe["stages"][0].update(steps=30, batch=4, frames=[8], warmup=5)
    recipe.update(checkpoint_every=30, joint_names=names)
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(recipe))
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "kairos"), "train", str(tmp_path / "ft.yaml"),
                        "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "refused")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 2 and "new_embodiment: true" in r.stderr, r.stderr[-2000:]
    recipe["new_embodiment"] = True
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(recipe))
    out = kairos("train", str(tmp_path / "ft.yaml"), "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"))
    assert "new embodiment" in out
    meta = json.load(open(tmp_path / "run" / "artifact" / "config.json"))
    assert meta["meta"]["joint_names"] == names and meta["world_model"]["action_dim"] == 7
    losses = json.load(open(tmp_path / "run" / "III" / "losses.json"))
    assert sum(losses[-5:]) < sum(losses[:5]), losses                # it learns the new joints
    kairos("export", str(tmp_path / "art"), "--checkpoint", str(tmp_path / "run" / "artifact"))
    kairos("verify", str(tmp_path / "art"), "--backend", "onnx")
    kairos("eval-bag", bags[0], "--artifact", str(tmp_path / "art"), "--backend", "onnx",
           "--report", str(tmp_path / "eval"))
    report = json.load(open(tmp_path / "eval" / "report.json"))[0]
    assert list(report["action_mae_per_joint"]) == names and report["action_mae_rad"] < 1.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_new_embodiment_experiment_runs_and_a_rerun_reuses_its_runs(tmp_path):
    """training/experiments/new_embodiment.py (the README's "Another robot" figure), a few steps of it:
    both runs train, are scored by eval-bag on the held-out bags, and plotted; a rerun retrains nothing."""
    from training.experiments import new_embodiment
    out, png = tmp_path / "ne", tmp_path / "ne.png"
    args = ["--demos", "2", "--heldout", "1", "--steps", "3", "--batch", "2", "--out", str(out), "--plot", str(png)]
    res = new_embodiment.main(args)
    assert set(res["runs"]) == {"artifact", "scratch"} and res["joints"] == [f"arm_{i}" for i in range(7)]
    for r in res["runs"].values():
        assert 0 < r["heldout_action_mae_rad"] < 1.0 and len(r["heldout_action_mae_per_step"]) > 1
    assert png.stat().st_size > 10_000
    cfg = out / "artifact" / "artifact" / "config.json"
    stamp = cfg.stat().st_mtime_ns
    again = new_embodiment.main(args)
    assert cfg.stat().st_mtime_ns == stamp and again["runs"] == res["runs"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_new_task_experiment_scores_both_runs_closed_loop(tmp_path):
    """The same experiment with --same-robot: the Sawyer's own joints, a plain fine-tune with the
    normalisation from the new data, and each run also scored closed loop by kairos evaluate."""
    from training.experiments import new_embodiment
    res = new_embodiment.main(["--same-robot", "--demos", "2", "--heldout", "1", "--steps", "3", "--batch", "2",
                               "--closed-loop", "2", "--out", str(tmp_path / "nt")])
    assert res["same_robot"] and len(res["joints"]) == 8
    for r in res["runs"].values():
        assert r["closed_loop_episodes"] == 2 and 0 <= r["closed_loop_successes"] <= 2
    with open(tmp_path / "nt" / "artifact.yaml") as f:
        recipe = yaml.safe_load(f)
    assert recipe["renormalize"] is True and "new_embodiment" not in recipe
