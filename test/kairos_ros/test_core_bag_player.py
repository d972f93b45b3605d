"""The playback plan: recorded spacing kept, episodes placed one after another on a clock that only
moves forward, /clock ticks in time order, `rate` stretching wall time; commands scored against the
recorded motion."""
import numpy as np
import pytest

from kairos_ros.core.bag_player import PlaybackConfig, PlaybackPlan, score_commands

S = 1_000_000_000


class FakeBag:
    """A BagSource stand-in: messages at given recorded times on given topics."""
    def __init__(self, path, times_ns, topics=("/camera/image_raw",), task="press"):
        self.path, self.record = path, {"status": "complete", "task": task}
        self.topics = {t: "sensor_msgs/msg/Image" for t in topics}
        self._msgs = [(topics[i % len(topics)], "sensor_msgs/msg/Image", t, bytes([i])) for i, t in enumerate(times_ns)]

    def raw_messages(self):
        yield from self._msgs


def test_episodes_keep_their_spacing_and_follow_each_other_on_one_forward_clock():
    a = FakeBag("a", [100 * S + k * S // 10 for k in range(5)])          # 0.4 s long
    b = FakeBag("b", [50 * S + k * S // 10 for k in range(3)])           # recorded *before* a
    plan = PlaybackPlan([a, b], PlaybackConfig(rate=1.0, clock_hz=20, gap_s=1.0, lead_s=0.2))
    ev = list(plan.events())
    msgs = [e for e in ev if e.kind == "message"]
    assert [e.raw for e in msgs] == [bytes([i]) for i in range(5)] + [bytes([i]) for i in range(3)]
    assert [e.t_ns for e in msgs] == [m[2] for m in a._msgs + b._msgs]      # recorded times kept with them
    assert np.allclose(np.diff([e.wall_s for e in msgs[:5]]), 0.1)       # recorded spacing
    assert msgs[0].wall_s == pytest.approx(0.2)                          # lead before the first message
    ta, tb = plan.timings
    assert ta.offset_ns == 0 and tb.offset_ns == (100 * S + 4 * S // 10) + S - 50 * S
    assert msgs[5].clock_ns - msgs[4].clock_ns == S                      # the gap, in clock time
    assert msgs[5].wall_s - msgs[4].wall_s == pytest.approx(1.0)
    walls = [e.wall_s for e in ev]
    assert walls == sorted(walls)                                        # one time-ordered stream
    clocks = [e.clock_ns for e in ev if e.kind == "clock"]
    assert clocks == sorted(clocks) and clocks[-1] >= msgs[-1].clock_ns  # runs on past the last message
    kinds = [e.kind for e in ev if e.kind.startswith("episode")]
    assert kinds == ["episode_start", "episode_end"] * 2
    start_b = [e for e in ev if e.kind == "episode_start"][1]
    assert start_b.wall_s == pytest.approx(msgs[5].wall_s - 0.2)         # reset + instruction lead the episode


def test_rate_stretches_wall_time_not_the_clock():
    times = [k * S // 10 for k in range(4)]
    full = [e for e in PlaybackPlan([FakeBag("a", times)], PlaybackConfig(rate=1.0)).events() if e.kind == "message"]
    half = [e for e in PlaybackPlan([FakeBag("a", times)], PlaybackConfig(rate=0.5)).events() if e.kind == "message"]
    assert [e.clock_ns for e in full] == [e.clock_ns for e in half]
    assert half[-1].wall_s - half[0].wall_s == pytest.approx(2 * (full[-1].wall_s - full[0].wall_s))
    ticks = [e for e in PlaybackPlan([FakeBag("a", times)], PlaybackConfig(rate=0.5, clock_hz=10)).events()
             if e.kind == "clock"]
    assert np.allclose(np.diff([e.clock_ns for e in ticks]), S // 20, atol=2)   # 10 per wall second = 20 per clock s


def test_only_the_played_topics_go_out_and_a_bag_without_any_is_refused():
    bag = FakeBag("a", [k * S for k in range(4)], topics=("/camera/image_raw", "/joint_trajectory_controller/joint_trajectory"))
    plan = PlaybackPlan([bag], PlaybackConfig(topics=("/camera/image_raw",)))
    assert plan.publishers() == [("/camera/image_raw", "sensor_msgs/msg/Image")]
    assert {e.topic for e in plan.events() if e.kind == "message"} == {"/camera/image_raw"}
    assert len(PlaybackPlan([bag], PlaybackConfig(topics=())).publishers()) == 2           # empty: everything
    with pytest.raises(ValueError, match="none of the played topics.*holds"):
        PlaybackPlan([FakeBag("b", [0], topics=("/other",))], PlaybackConfig())
    with pytest.raises(ValueError, match="rate must be > 0"):
        PlaybackConfig(rate=0)


def test_commands_are_scored_against_the_recorded_motion_and_holding_still():
    states = [(k * S // 10, {"a": 0.1 * k, "b": 0.0}) for k in range(10)]          # a moves 0.1 per tick
    perfect = [(3 * S // 10, [(dt, {"a": 0.3 + 0.1 * (dt // (S // 10)), "b": 0.0}) for dt in (S // 10, 2 * S // 10)])]
    s = score_commands(perfect, states, max_gap_ns=S // 20)
    assert len(s) == 1 and np.allclose(s[0].error, 0) and np.allclose(s[0].hold, [[0.1, 0], [0.2, 0]])
    late = [(9 * S // 10, [(S // 10, {"a": 0.9, "b": 0.0})])]                       # a point past the bag's end
    assert score_commands(late, states, max_gap_ns=S // 20) == []
    with pytest.raises(ValueError, match=r"no \['c'\]"):
        score_commands([(0, [(S // 10, {"c": 0.0})])], states, max_gap_ns=S // 20)


def test_a_plain_rosbag2_bag_plays_like_an_episode(tmp_path):
    """BagSource reads a plain rosbag2 directory (metadata.yaml; here one of the recorder's closed
    segments, which is exactly that) as well as a recorder episode, lazily and in time order."""
    from kairos_ros.core.recorder import BagSource, EpisodeRecorder, RecorderConfig, RecorderError
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path), min_free_mb=0))
    name = rec.start_episode(task="press")
    for k in range(5):
        rec.write("/camera/image_raw", "sensor_msgs/msg/Image", S + k * S // 10, bytes([0, 1, 0, 0, k]))
    rec.end_episode(success=True)
    episode = BagSource(str(tmp_path / name))
    plain = BagSource(str(tmp_path / name / "seg_00000"))
    assert episode.record["task"] == "press" and plain.record == {"status": "complete", "task": "", "success": None}
    assert plain.topics == episode.topics == {"/camera/image_raw": "sensor_msgs/msg/Image"}
    assert list(plain.raw_messages()) == list(episode.raw_messages())
    assert [m[2] for m in plain.raw_messages()] == [S + k * S // 10 for k in range(5)]
    plan = PlaybackPlan([plain], PlaybackConfig())
    assert [e.raw[-1] for e in plan.events() if e.kind == "message"] == list(range(5))
    with pytest.raises(RecorderError, match="neither a recorded episode"):
        BagSource(str(tmp_path / "missing"))


def test_scoring_reads_the_recorded_frame_nearest_each_imagined_time(tmp_path):
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image, JointState
    from kairos_ros.core.bag_player import recorded_for_scoring
    from kairos_ros.core.recorder import BagSource, EpisodeRecorder, RecorderConfig
    rec = EpisodeRecorder(RecorderConfig(output_dir=str(tmp_path), min_free_mb=0))
    name = rec.start_episode(task="press")
    for k in range(6):                                      # 10 Hz, frame k is grey 10 * k
        t = S + k * S // 10
        rec.write("/camera/image_raw", "sensor_msgs/msg/Image", t, serialize_message(
            Image(height=2, width=2, encoding="rgb8", step=6, data=bytes([10 * k] * 12))))
        rec.write("/joint_states", "sensor_msgs/msg/JointState", t + 1000, serialize_message(
            JointState(name=["a"], position=[0.1 * k])))
    rec.end_episode(success=True)
    wanted = [S + 2 * S // 10 + 30_000_000, S + 4 * S // 10 - 20_000_000, 3 * S]   # near 2, near 4, after the end
    states, frames = recorded_for_scoring(BagSource(str(tmp_path / name)), "/joint_states", "/camera/image_raw",
                                          wanted, max_gap_ns=S // 20)
    assert np.allclose([s[1]["a"] for s in states], [0.1 * k for k in range(6)])
    assert sorted(frames) == wanted[:2]
    assert frames[wanted[0]][0, 0, 0] == 20 and frames[wanted[1]][0, 0, 0] == 40 and frames[wanted[0]].shape == (2, 2, 3)
