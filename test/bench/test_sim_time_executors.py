"""bench/sim_time_executors.py replays episodes through the act node under /clock with the chosen
executors and prints, per executor, the system-clock row and one row per /clock rate."""
import json
import os
import sys

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState

from kairos_ros.core.recorder import EpisodeRecorder, RecorderConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
pytestmark = [pytest.mark.ros, pytest.mark.slow]
S = 1_000_000_000


@pytest.mark.timeout(400)
def test_bench_replays_under_each_clock_and_reports_rows(tmp_path, ros_context, exported_default, monkeypatch, capsys):
    import sim_time_executors
    from kairos_sim.metaworld_sim import JOINT_NAMES
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path / "bags"), min_free_mb=0))
    name = rec.start_episode(task="press the button top down")
    rng = np.random.default_rng(0)
    for i in range(15):                                  # 1.5 s at 10 Hz, the model's 64 px and joints
        t = 5 * S + i * S // 10
        img = Image(height=64, width=64, encoding="rgb8", step=192,
                    data=rng.integers(0, 255, 64 * 64 * 3, dtype=np.uint8).tobytes())
        js = JointState(name=JOINT_NAMES, position=[0.01 * i] * len(JOINT_NAMES))
        img.header.stamp.sec = js.header.stamp.sec = t // S
        img.header.stamp.nanosec = js.header.stamp.nanosec = t % S
        rec.write("/camera/image_raw", "sensor_msgs/msg/Image", t, serialize_message(img))
        rec.write("/joint_states", "sensor_msgs/msg/JointState", t + 2_000_000, serialize_message(js))
    rec.end_episode(success=True)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_context.get_domain_id()))
    monkeypatch.setenv("KAIROS_EXPORT_CACHE", exported_default[1])
    out = tmp_path / "bench.json"
    assert sim_time_executors.main(["--bags", str(tmp_path / "bags" / name), "--executors", "single",
                                    "--clock-hz", "200", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["executor"], r["clock_hz"]) for r in rows] == [("single", 0.0), ("single", 200.0)]
    for r in rows:
        assert r["commands"] >= 3 and np.isfinite(r["action_mae_rad"]) and r["latency_p99_ms"] > 0, r
    assert rows[0]["p99_vs_system"] == 1.0
    assert "| single | /clock 200 Hz |" in capsys.readouterr().out
