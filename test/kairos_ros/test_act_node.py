"""The act node in its own process (`kairos act`), as on a robot, driven over real DDS: images and
joint states in, JointTrajectory + ActionChunk out in the robot's joint order and within limits;
bad input gives a hold and an ERROR diagnostic, not a crash; services work; SIGINT exits cleanly."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

JOINTS = ["right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5", "right_j6"]


@pytest.fixture
def act_process(tmp_path, ros_context):
    with open("config/act.yaml") as f:
        cfg = yaml.safe_load(f)
    p = cfg["kairos_act"]["ros__parameters"]
    p.update(lower=[-0.3] * 7, upper=[0.3] * 7, max_velocity=[0.5] * 7, image_max_age_s=1.0, joints_max_age_s=1.0,
             sampler_steps=2, diagnostics_period_s=0.3)
    path = tmp_path / "act.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_context.get_domain_id()))
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", "act", "--config", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()


def test_act_node_commands_holds_and_shuts_down(act_process, ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    from kairos_msgs.msg import ActionChunk, ImaginedFuture
    from kairos_msgs.srv import ResetMemory, SetInstruction

    node = rclpy.create_node("act_test_driver", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    trajs, chunks, diags, futures = [], [], [], []
    node.create_subscription(ImaginedFuture, "kairos_act/imagined_future", futures.append, 10)
    node.create_subscription(JointTrajectory, "joint_trajectory_controller/joint_trajectory", trajs.append, 10)
    node.create_subscription(ActionChunk, "kairos_act/action_chunk", chunks.append, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    img_pub = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
    js_pub = node.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    state = {"pos": [0.1] * 7, "names": list(reversed(JOINTS))}          # any order: the node maps names

    def publish_inputs():
        img = Image(height=96, width=96, encoding="rgb8", step=96 * 3, data=rgb.tobytes())
        img.header.stamp = node.get_clock().now().to_msg()
        img_pub.publish(img)
        js = JointState(name=state["names"], position=state["pos"])
        js.header.stamp = img.header.stamp
        js_pub.publish(js)

    node.create_timer(0.05, publish_inputs)

    def spin_until(cond, timeout):
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
            assert act_process.poll() is None, act_process.stdout.read()
        return cond()

    assert spin_until(lambda: len(trajs) >= 3 and chunks, 90), "no trajectory from the act node"
    t = trajs[-1]
    assert list(t.joint_names) == JOINTS and len(t.points) >= 1
    pos = np.array([p.positions for p in t.points])
    assert pos.shape[1] == 7 and (np.abs(pos) <= 0.3 + 1e-9).all()
    assert t.points[0].time_from_start.nanosec == int(0.1 * 1e9)
    assert chunks[-1].horizon == 8 and len(chunks[-1].positions) == 8 * 7
    assert spin_until(lambda: futures, 10), "no ImaginedFuture"
    f = futures[-1]
    assert len(f.frames) == len(f.stamps) == 2                            # tiny preset: 2 future frames
    assert (f.frames[0].height, f.frames[0].width, f.frames[0].encoding) == (64, 64, "rgb8")
    assert len(f.frames[0].data) == 64 * 64 * 3 and f.action_chunk.horizon == 8
    t_img = [s.sec + s.nanosec * 1e-9 for s in f.stamps]
    assert 0.09 < t_img[1] - t_img[0] < 0.11                               # one control step apart

    # a NaN in the joint state: hold (one point at the last good position) and an ERROR diagnostic
    state["pos"] = [0.1] * 6 + [float("nan")]

    def holding():
        return any(s.level == DiagnosticStatus.ERROR and "non-finite" in s.message for d in diags for s in d.status)

    assert spin_until(holding, 10), "no ERROR diagnostic for a NaN joint"
    assert spin_until(lambda: len(trajs[-1].points) == 1, 5), "no hold trajectory"
    assert np.allclose(trajs[-1].points[0].positions, 0.1)              # the last good position
    # good input again: commanding resumes
    state["pos"] = [0.05] * 7
    diags.clear()
    assert spin_until(lambda: any(s.level == DiagnosticStatus.OK for d in diags for s in d.status), 10)
    assert spin_until(lambda: len(trajs[-1].points) > 1, 10)               # a chunk again, not a hold
    ok = [s for d in diags for s in d.status if s.level == DiagnosticStatus.OK][-1]
    assert {kv.key: kv.value for kv in ok.values}["sampler_steps"] == "2"  # the count the config asked for

    for srv_type, name, req in ((ResetMemory, "kairos_act/reset_memory", ResetMemory.Request()),
                                (SetInstruction, "kairos_act/set_instruction",
                                 SetInstruction.Request(instruction="open the drawer"))):
        cli = node.create_client(srv_type, name)
        assert spin_until(cli.service_is_ready, 10)
        fut = cli.call_async(req)
        assert spin_until(fut.done, 10) and fut.result().success

    act_process.send_signal(signal.SIGINT)
    out, _ = act_process.communicate(timeout=30)
    assert act_process.returncode == 0, out
    assert "latency p50" in out
    node.destroy_node()


def test_configure_fails_clearly_when_the_rate_is_not_the_artifacts(tmp_path, ros_context):
    """The committed artifact learned at 10 Hz: asked to act at 40 Hz, configure fails with the reason
    and `kairos act` exits non-zero before commanding anything."""
    with open("config/sim_act.yaml") as f:
        cfg = yaml.safe_load(f)
    p = cfg["kairos_act"]["ros__parameters"]
    p.update(control_rate_hz=40.0, backend="torch")
    path = tmp_path / "act.yaml"
    path.write_text(yaml.safe_dump({"kairos_act": cfg["kairos_act"]}))
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_context.get_domain_id()))
    out = subprocess.run([sys.executable, "-m", "training.cli", "act", "--config", str(path)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "acts at 10 Hz" in out.stdout + out.stderr and "configure failed" in out.stdout + out.stderr


def test_sim_act_refuses_a_sampler_step_count_below_one(capsys):
    """`kairos sim-act --sampler-steps N` overrides the config's count; 0 is refused before any node starts."""
    from kairos_ros.sim_act_cli import main
    with pytest.raises(SystemExit) as e:
        main(["--sampler-steps", "0"])
    assert e.value.code == 2 and "--sampler-steps must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:                         # --tick-on overrides tick_on: timer or frame
        main(["--tick-on", "sometimes"])
    assert e.value.code == 2 and "--tick-on" in capsys.readouterr().err


@pytest.mark.parametrize("artifact,expected", [("artifacts/tiny_button_press_student", 1),
                                               ("artifacts/tiny_button_press", 4)])
def test_act_node_samples_at_the_artifacts_own_step_count_by_default(ros_context, artifact, expected):
    """sampler_steps 0 (the default, and config/sim_act.yaml's): a distilled student samples at the count
    it was distilled for, anything else at 4; an explicit count wins; a negative one fails configure."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from kairos_ros.act_node import ActNode
    with open("config/sim_act.yaml") as f:
        p = yaml.safe_load(f)["kairos_act"]["ros__parameters"]
    assert p["sampler_steps"] == 0
    for steps, want in ((0, expected), (2, 2), (-1, None)):
        params = {**p, "artifact": artifact, "backend": "torch", "sampler_steps": steps}
        node = ActNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        try:
            rc = node.trigger_configure()
            if want is None:
                assert rc == TransitionCallbackReturn.FAILURE and node.core is None
            else:
                assert rc == TransitionCallbackReturn.SUCCESS and node.core.engine.sampler_steps == want
        finally:
            node.destroy_node()


@pytest.mark.timeout(180)
def test_tick_on_frame_commands_as_soon_as_a_frame_and_its_joints_arrive(ros_context):
    """tick_on: frame, at a 1 Hz control rate: each frame (1.1 s apart) is answered by a command within
    half a period of its arrival, not at the next timer tick (which is up to a whole period away), and
    the node records the frame's age at the command."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    from kairos_ros.act_node import ActNode
    with open("config/act.yaml") as f:
        p = yaml.safe_load(f)["kairos_act"]["ros__parameters"]
    p.update(lower=[-0.3] * 7, upper=[0.3] * 7, max_velocity=[0.5] * 7, image_max_age_s=3.0, joints_max_age_s=3.0,
             sampler_steps=1, control_rate_hz=1.0, tick_on="frame", artifact="", backend="torch")
    act = ActNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in p.items()])
    driver = rclpy.create_node("tick_on_frame_driver", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(act)
    ex.add_node(driver)
    got = []
    driver.create_subscription(JointTrajectory, "joint_trajectory_controller/joint_trajectory",
                               lambda m: got.append((time.monotonic(), len(m.points))), 10)
    img_pub = driver.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
    js_pub = driver.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)

    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.02)

    def frame():
        stamp = driver.get_clock().now().to_msg()
        img = Image(height=64, width=64, encoding="rgb8", step=64 * 3, data=rgb.tobytes())
        img.header.stamp = stamp
        js = JointState(name=JOINTS, position=[0.1] * 7)
        js.header.stamp = stamp
        img_pub.publish(img)
        js_pub.publish(js)
        return time.monotonic()

    try:
        assert act.trigger_configure() == TransitionCallbackReturn.SUCCESS
        act.trigger_activate()
        end = time.monotonic() + 30
        while (img_pub.get_subscription_count() == 0 or js_pub.get_subscription_count() == 0) and time.monotonic() < end:
            spin(0.1)
        for _ in range(2):                              # the memory starts; the first sampling warms up
            frame()
            spin(1.2)
        delays = []
        for _ in range(3):
            got.clear()
            sent = frame()
            spin(1.1)
            answers = [t - sent for t, n in got if n > 1]   # a chunk (a hold has one point)
            assert answers, "no command for the frame"
            delays.append(answers[0])
        assert max(delays) < 0.5, delays
        assert act.frame_ages and max(act.frame_ages[-3:]) < 0.5, act.frame_ages
    finally:
        act.trigger_deactivate()
        act.trigger_shutdown()
        ex.shutdown()
        act.destroy_node()
        driver.destroy_node()


def test_every_cli_executor_delivers_messages_and_unknown_ones_are_refused(ros_context):
    """The executors `kairos act/sim-act/replay --executor` offer spin real subscriptions and timers."""
    import rclpy
    from std_msgs.msg import String

    from kairos_ros.node_util import EXECUTORS, make_executor
    for kind in EXECUTORS:
        node = rclpy.create_node(f"executor_{kind}", context=ros_context)
        got, ticks = [], []
        node.create_subscription(String, f"executor_test_{kind}", lambda m: got.append(m.data), 10)
        pub = node.create_publisher(String, f"executor_test_{kind}", 10)
        node.create_timer(0.02, lambda: ticks.append(1))
        ex = make_executor(kind, context=ros_context)
        ex.add_node(node)
        deadline = time.time() + 10
        while (len(got) < 3 or len(ticks) < 3) and time.time() < deadline:
            pub.publish(String(data=kind))
            ex.spin_once(timeout_sec=0.05)
        ex.shutdown(timeout_sec=5)
        node.destroy_node()
        assert got[:3] == [kind] * 3 and len(ticks) >= 3, (kind, got, ticks)
    with pytest.raises(ValueError, match="unknown executor 'threads'"):
        make_executor("threads", context=ros_context)


def test_act_node_executable_serves_lifecycle_and_exits_on_sigint_with_every_executor(ros_context):
    """`ros2 run kairos_ros act_node --executor X` (what the launch files start): its lifecycle
    services answer and SIGINT ends it cleanly, on each executor (EventsExecutor.spin() blocked every
    Python thread in rclpy 9.1, so the node spins with spin_once)."""
    import rclpy
    from lifecycle_msgs.srv import GetState

    from kairos_ros.node_util import EXECUTORS
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_context.get_domain_id()))
    exe = os.path.join(os.path.dirname(sys.executable), "act_node")
    procs = {k: subprocess.Popen([exe, "--executor", k, "--ros-args", "--params-file", "config/act.yaml",
                                  "-r", f"__ns:=/exec_{k}"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for k in EXECUTORS}
    node = rclpy.create_node("act_node_exec_probe", context=ros_context)
    ex = rclpy.executors.SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:
        for kind, proc in procs.items():
            client = node.create_client(GetState, f"/exec_{kind}/kairos_act/get_state")
            assert client.wait_for_service(timeout_sec=60), kind
            future = client.call_async(GetState.Request())
            deadline = time.time() + 20
            while not future.done() and time.time() < deadline:
                ex.spin_once(timeout_sec=0.1)
            assert future.done() and future.result().current_state.label == "unconfigured", kind
        for kind, proc in procs.items():
            proc.send_signal(signal.SIGINT)
        for kind, proc in procs.items():
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0 and "Traceback" not in out, (kind, out[-2000:])
    finally:
        ex.shutdown()
        node.destroy_node()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([exe, "--executor", "threads"], env=env, check=True, capture_output=True, timeout=60)


def test_act_node_under_sim_time_says_when_clock_is_missing_or_stopped(tmp_path, ros_context):
    """use_sim_time without /clock (a misconfigured robot, a paused simulator): the node cannot tick,
    and /diagnostics, on the steady clock, says why; when /clock moves the warning clears."""
    import rclpy
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rosgraph_msgs.msg import Clock

    with open("config/act.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["kairos_act"]["ros__parameters"].update(diagnostics_period_s=0.2, sampler_steps=1)
    path = tmp_path / "act.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_context.get_domain_id()))
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", "act", "--config", str(path), "--ros-args",
                             "-p", "use_sim_time:=true"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    node = rclpy.create_node("sim_time_probe", context=ros_context)
    ex = rclpy.executors.SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    diags = []
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: diags.extend(s for s in m.status if s.name.startswith("kairos_act")), 10)
    clock_pub = node.create_publisher(Clock, "/clock", 10)

    def wait_for(pred, seconds, clock_from=None):
        deadline, t0 = time.time() + seconds, time.time()
        while time.time() < deadline:
            if clock_from is not None:               # sim time = clock_from + wall time since
                ns = clock_from + int((time.time() - t0) * 1e9)
                clock_pub.publish(Clock(clock=Time(sec=ns // 10**9, nanosec=ns % 10**9)))
            ex.spin_once(timeout_sec=0.01)
            if diags and pred(diags[-1]):
                return diags[-1]
        return None
    try:
        st = wait_for(lambda s: "no /clock has arrived" in s.message, 90)
        assert st is not None and st.level == DiagnosticStatus.WARN, diags[-3:]
        moving = wait_for(lambda s: "/clock" not in s.message, 20, clock_from=100 * 10**9)
        assert moving is not None, diags[-3:]                   # ticking now: it holds for want of a camera
        stopped = wait_for(lambda s: "/clock has not moved" in s.message, 20)
        assert stopped is not None and stopped.level == DiagnosticStatus.WARN, diags[-3:]
    finally:
        ex.shutdown()
        node.destroy_node()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:]
    assert "no /clock has arrived" in out and "/clock is moving again" in out, out[-2000:]
