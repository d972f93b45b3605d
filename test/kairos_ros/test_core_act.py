"""ActCore: commands within limits in the robot's joint order; every bad input leads to a hold
with its reason, reported once, and control resumes when inputs are good again."""
import numpy as np
import pytest
import torch

from kairos_model.checkpoint import build_parts
from kairos_model.engine import TorchEngine
from kairos_model.world_model import WorldModelConfig
from kairos_ros.core.act_core import ActConfig, ActCore

ROBOT = ["j7", "j1", "j2", "j3", "j4", "j5", "j6"]           # the robot's order differs from the model's
MODEL = ["j1", "j2", "j3", "j4", "j5", "j6", "j7"]


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    p = build_parts(WorldModelConfig.preset("tiny"))
    return TorchEngine(p["world_model"], p["vae"], p["understanding"], sampler_steps=2)


def core(engine, **kw):
    cfg = ActConfig(joint_names=ROBOT, model_joint_names=MODEL, lower=[-0.5] * 7, upper=[0.5] * 7,
                    max_velocity=[1.0] * 7, instruction="press the button", **kw)
    c = ActCore(cfg, engine)
    c.reset()
    return c


def feed(c, now, joints=None, names=MODEL, image=None):
    c.set_image(image if image is not None else np.full((96, 128, 3), 100, np.uint8), now)
    c.set_joints(names, joints if joints is not None else [0.1] * 7, now)


def test_good_inputs_give_a_clamped_trajectory_in_robot_order(engine):
    c = core(engine)
    feed(c, 0.0)
    r = c.tick(0.01)
    assert r.kind == "trajectory" and r.prediction is not None
    assert r.positions.shape == (8, 7)                 # the rest of the chunk: the controller never starves
    assert (np.abs(r.positions) <= 0.5 + 1e-12).all()
    assert (np.abs(np.diff(np.vstack([np.full(7, 0.1), r.positions]), axis=0)) <= 0.1 + 1e-9).all()
    r2 = c.tick(0.02)
    assert r2.kind == "trajectory" and r2.prediction is None and len(r2.positions) == 7   # same chunk


@pytest.mark.parametrize("bad,reason", [
    (dict(joints=[0.1] * 6 + [float("nan")]), "non-finite"),
    (dict(names=MODEL[:-1] + ["elbow"]), "lacks joints ['j7']"),
    (dict(image=np.zeros((4, 4), np.uint8)), "camera"),
])
def test_bad_input_holds_once_per_cause_then_recovers(engine, bad, reason):
    c = core(engine)
    if "image" in bad:
        c.set_joints(MODEL, [0.1] * 7, 0.0)
        c.set_image(None, 0.0, error="camera image is 'bgr16', expected one of rgb8, bgr8, rgba8, bgra8, mono8")
    else:
        feed(c, 0.0, **bad)
    r = c.tick(0.01)
    assert r.kind in ("hold", "idle") and reason in r.reason and r.new_faults == [r.reason]
    assert c.tick(0.02).new_faults == []                                 # logged once
    feed(c, 0.03)
    assert c.tick(0.04).kind == "trajectory"


def test_stale_streams_hold_at_the_current_position(engine):
    c = core(engine)
    feed(c, 0.0, joints=[0.2] * 7)
    c.set_joints(MODEL, [0.2] * 7, 10.0)
    r = c.tick(10.0)
    assert r.kind == "hold" and "camera image is 10.000 s old" in r.reason
    assert np.allclose(r.positions, 0.2)
    assert "joint state is" in c.tick(20.0).reason
    from kairos_ros.core.act_core import EXPECTED_WAITS
    assert r.reason not in EXPECTED_WAITS                  # a stale stream is a fault (logged as an error)


def test_nothing_received_yet_is_a_warning_a_stream_gone_bad_an_error(engine):
    from kairos_ros.core.act_core import fault_severity
    c = core(engine)
    r = c.tick(0.0)
    assert r.kind in ("hold", "idle") and r.reason == "no joint state received yet"
    assert fault_severity(r.reason) == "warn"                              # drivers still starting
    c.set_joints(MODEL, [0.1] * 7, 0.1)
    r = c.tick(0.1)
    assert r.kind == "hold" and r.reason == "no camera image received yet" and fault_severity(r.reason) == "warn"
    assert np.allclose(r.positions, 0.1)                                  # held where the arm is
    feed(c, 0.2)
    assert c.tick(0.2).kind == "trajectory"
    r = c.tick(5.0)                                                       # both streams stopped
    assert r.kind == "hold" and fault_severity(r.reason) == "error"
    c.set_instruction("")
    feed(c, 5.1)
    r = c.tick(5.1)
    assert r.reason == "no instruction set" and fault_severity(r.reason) == "warn"


def test_backend_errors_hold_instead_of_crashing(engine):
    class Failing:
        image_size = engine.image_size

        def reset(self):
            pass

        def step(self, obs, sample=True):
            raise RuntimeError("CUDA error: device lost")

    c = ActCore(ActConfig(joint_names=MODEL, lower=[-1] * 7, upper=[1] * 7, max_velocity=[1] * 7,
                          instruction="x"), Failing())
    feed(c, 0.0)
    r = c.tick(0.0)
    assert r.kind == "hold" and "backend error: RuntimeError: CUDA error" in r.reason


def test_config_errors():
    with pytest.raises(ValueError, match="strategy must be"):
        ActConfig(joint_names=["a"], lower=[0], upper=[1], max_velocity=[1], strategy="rtc2")
    with pytest.raises(ValueError, match="differ"):
        ActConfig(joint_names=["a"], model_joint_names=["b"], lower=[0], upper=[1], max_velocity=[1])


def test_memory_takes_every_frame_but_samples_only_when_a_chunk_is_needed(engine):
    c = core(engine, strategy="execute_then_replan", execution_horizon=4)
    sampled = []
    for k in range(8):
        feed(c, now=float(k))
        r = c.tick(float(k))
        assert r.kind == "trajectory"
        sampled.append(r.prediction is not None)
    assert sampled == [True, False, False, False, True, False, False, False]
    assert engine.steps == 8                      # one memory update per tick, not per chunk


def test_frames_pair_with_the_joint_state_nearest_in_time(engine):
    c = core(engine, sync_tolerance_s=0.05)
    img = np.full((64, 64, 3), 100, np.uint8)
    for k, pos in enumerate((0.10, 0.20, 0.30)):              # joint states taken at 10.0, 10.1, 10.2 s
        c.set_joints(MODEL, [pos] * 7, 10.2, header_stamp=10.0 + 0.1 * k)
    c.set_image(img, 10.2, header_stamp=10.11)                # the frame was taken at 10.11 s
    joints, gap = c.paired_joints()
    assert joints[1] == [0.20] * 7 and abs(gap - 0.01) < 1e-9
    assert c.tick(10.2).kind == "trajectory"
    c.set_image(img, 10.3, header_stamp=10.30)                # its joint state is still in flight:
    steps = c.engine.steps
    r = c.tick(10.3)                                          # the tick runs on the chunk it has and
    assert r.kind == "trajectory" and c.engine.steps == steps  # keeps the frame for later
    c.set_joints(MODEL, [0.40] * 7, 10.32, header_stamp=10.30)
    r = c.tick(10.4)                                          # now the pair is complete: one update
    assert r.kind == "trajectory" and c.engine.steps == steps + 1
    c.set_image(img, 10.5, header_stamp=10.60)                # 0.3 s after the newest joint state
    assert c.tick(10.55).kind == "trajectory"                 # arrived 0.05 s ago: may be in flight
    r = c.tick(10.65)                                         # a control period later it is not
    assert r.kind == "hold" and "apart" in r.reason


def test_a_first_frame_waits_for_its_joint_state(engine):
    c = core(engine, sync_tolerance_s=0.05)
    img = np.full((64, 64, 3), 100, np.uint8)
    c.set_joints(MODEL, [0.1] * 7, 5.0, header_stamp=5.0)
    c.set_image(img, 5.1, header_stamp=5.1)
    r = c.tick(5.12)
    assert r.kind == "hold" and "waiting for the joint state" in r.reason
    c.set_joints(MODEL, [0.1] * 7, 5.13, header_stamp=5.1)
    assert c.tick(5.15).kind == "trajectory"


def test_real_time_chunking_joins_chunks_without_a_jump(engine):
    c = core(engine, strategy="real_time_chunking", execution_horizon=3, rtc_delay=1)
    preds = {}
    for k in range(7):
        feed(c, now=float(k))
        r = c.tick(float(k))
        assert r.kind == "trajectory"
        if r.prediction is not None:
            preds[k] = r.prediction.actions                       # [H, J] model order, before limits
    assert sorted(preds) == [0, 3, 6]
    # the tick-3 chunk starts with exactly what the tick-0 chunk said for tick 3, and so on
    np.testing.assert_allclose(preds[3][0], preds[0][3], atol=1e-5)
    np.testing.assert_allclose(preds[6][0], preds[3][3], atol=1e-5)


def test_the_memory_takes_each_camera_frame_once_however_the_ticks_fall(engine):
    """The control timer and the camera are not in lockstep: a tick without a new frame must not feed
    the held frame to the memory again, and after a reset the memory waits for a fresh frame."""
    calls = []

    class Recording:
        image_size = engine.image_size

        def reset(self):
            calls.append("reset")

        def step(self, obs, sample=True, update_memory=True, **kw):
            calls.append(("step", sample, update_memory))
            return engine.step(obs, sample=sample, update_memory=update_memory, **kw)

    engine.reset()
    c = ActCore(ActConfig(joint_names=MODEL, lower=[-1] * 7, upper=[1] * 7, max_velocity=[1] * 7,
                          instruction="x", execution_horizon=2), Recording())
    feed(c, 0.0)
    assert c.tick(0.0).kind == "trajectory"            # new frame, chunk needed
    assert c.tick(0.1).kind == "trajectory"            # same frame, chunk still running: no engine call
    r = c.tick(0.2)                                    # same frame, chunk used up: sample, memory untouched
    assert r.kind == "trajectory"
    assert calls == [("step", True, True), ("step", True, False)]
    c.reset()
    r = c.tick(0.25)
    assert r.kind == "hold" and "first camera frame after the reset" in r.reason
    from kairos_ros.core.act_core import EXPECTED_WAITS
    assert r.reason in EXPECTED_WAITS                      # a normal wait (logged as info, not an error)
    feed(c, 0.3)
    assert c.tick(0.3).kind == "trajectory" and calls[-1] == ("step", True, True)


def test_the_control_rate_must_match_the_rate_the_artifact_learned():
    from kairos_ros.core.act_core import check_control_rate
    check_control_rate({"control_dt": 0.1}, 10.0)                  # the 10 Hz default
    check_control_rate({"control_dt": 0.025}, 40.0)
    check_control_rate({}, 25.0)                                   # older artifacts carry no rate
    with pytest.raises(ValueError, match="acts at 40 Hz.*set control_rate_hz to 40"):
        check_control_rate({"control_dt": 0.025}, 10.0)


def test_a_distilled_student_run_at_another_step_count_is_flagged():
    """A student distilled for one sampler step is warned about at four (what it was not trained for);
    an undistilled model, or the student at its own count, runs without a note."""
    from kairos_ros.core.act_core import distilled_step_note
    student = {"sampler_steps": 1, "distilled": {"student_steps": 1, "teacher_steps": 40}}
    assert distilled_step_note(student, 1) is None
    note = distilled_step_note(student, 4, "artifact s")
    assert note and "distilled for 1 sampler step" in note and "runs at 4" in note and "sampler_steps: 1" in note
    assert distilled_step_note({"sampler_steps": 4}, 1) is None        # a teacher: any step count is its own sampler
    assert distilled_step_note({}, 4) is None


def test_a_frame_is_ready_once_its_joint_state_is_in_and_until_the_memory_takes_it(engine):
    """frame_ready drives the act node's tick_on: frame: a new frame with its joint state in, not one in
    flight, not one the memory already took; used_stamp is the taken frame's arrival time."""
    c = core(engine, sync_tolerance_s=0.05)
    img = np.full((64, 64, 3), 100, np.uint8)
    assert not c.frame_ready(5.0)                                    # nothing yet
    c.set_joints(MODEL, [0.1] * 7, 5.0, header_stamp=5.0)
    c.set_image(img, 5.1, header_stamp=5.1)
    assert not c.frame_ready(5.11)                                   # its joint state is on the way
    c.set_joints(MODEL, [0.1] * 7, 5.12, header_stamp=5.1)
    assert c.frame_ready(5.12)
    assert c.tick(5.13).kind == "trajectory" and c.used_stamp == 5.1
    assert not c.frame_ready(5.14)                                   # taken
    c.set_image(img, 5.2, header_stamp=5.2)
    c.set_joints(MODEL, [0.1] * 7, 5.2, header_stamp=5.2)
    assert c.frame_ready(5.21)
    c.reset()                                                        # a frame held at a reset is the old episode's
    assert not c.frame_ready(5.22)


def test_hold_reasons_are_counted_by_cause_not_by_their_numbers():
    from kairos_ros.core.act_core import hold_kind
    assert hold_kind("joint state is 0.570 s old (max 0.5 s)") == hold_kind("joint state is 1.2 s old (max 0.5 s)") \
        == "joint state is # s old (max # s)"
    assert hold_kind("no camera image received yet") == "no camera image received yet"


def test_warm_up_leaves_no_trace_in_the_actions():
    """A warmed-up core commands exactly what a fresh one does on the same frames (the memory, step
    count and noise generator are reset after the warm-up)."""
    import torch
    from kairos_model.checkpoint import build_parts
    from kairos_model.engine import TorchEngine
    from kairos_model.world_model import WorldModelConfig
    torch.manual_seed(0)
    parts = build_parts(WorldModelConfig.preset("tiny", action_dim=2, proprio_dim=2))

    def core():
        eng = TorchEngine(parts["world_model"], parts["vae"], parts["understanding"], sampler_steps=2)
        return ActCore(ActConfig(joint_names=["a", "b"], lower=[-1, -1], upper=[1, 1], max_velocity=[9, 9],
                                 instruction="push"), eng)
    warm, cold = core(), core()
    took = warm.warm_up(steps=2, decode_future=True)
    assert len(took) == 2 and warm.engine.steps == 0
    rng = np.random.default_rng(1)
    for k in range(3):
        img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        out = []
        for c in (warm, cold):
            c.set_image(img, stamp=0.1 * k)
            c.set_joints(["a", "b"], [0.1 * k, -0.1], stamp=0.1 * k)
            out.append(c.tick(0.1 * k))
        assert out[0].kind == out[1].kind == "trajectory", (out[0].reason, out[1].reason)
        np.testing.assert_array_equal(out[0].positions, out[1].positions)
