"""kairos_msgs, as built by scripts/setup.sh, travels over real DDS."""
import time

import pytest

pytestmark = pytest.mark.ros


def spin_until(executor, cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    return cond()


def test_action_chunk_round_trip_over_dds(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from kairos_msgs.msg import ActionChunk

    node = rclpy.create_node("kairos_msgs_test", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    got = []
    node.create_subscription(ActionChunk, "test_chunk", got.append, 10)
    pub = node.create_publisher(ActionChunk, "test_chunk", 10)
    msg = ActionChunk(joint_names=["j1", "j2"], horizon=3, step_duration=0.1,
                      positions=[float(i) for i in range(6)], control_step=7, artifact_id="abc")
    end = time.monotonic() + 5
    while not got and time.monotonic() < end:
        pub.publish(msg)
        ex.spin_once(timeout_sec=0.05)
    assert got, "no ActionChunk came back"
    m = got[0]
    assert list(m.joint_names) == ["j1", "j2"] and m.horizon == 3 and m.control_step == 7
    assert list(m.positions) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    node.destroy_node()


def test_set_instruction_service_round_trip(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from kairos_msgs.srv import SetInstruction

    node = rclpy.create_node("kairos_srv_test", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)

    def handle(req, resp):
        resp.success = bool(req.instruction)
        resp.message = f"now: {req.instruction}"
        return resp

    node.create_service(SetInstruction, "set_instruction", handle)
    cli = node.create_client(SetInstruction, "set_instruction")
    assert spin_until(ex, lambda: cli.service_is_ready())
    fut = cli.call_async(SetInstruction.Request(instruction="press the button"))
    assert spin_until(ex, fut.done)
    assert fut.result().success and fut.result().message == "now: press the button"
    node.destroy_node()
