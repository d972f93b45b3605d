"""What every kairos_ros node does the same way: declare its PARAMETERS table with descriptors, and
(for the plain, non-lifecycle nodes) spin until SIGINT/SIGTERM and shut down cleanly."""
from __future__ import annotations

import os
import sys
from typing import Callable, Dict, Tuple

import rclpy
from rcl_interfaces.msg import ParameterDescriptor


def declare_parameters(node, table: Dict[str, Tuple[object, str]]) -> None:
    """table: name -> (default, description), as the nodes' PARAMETERS dicts (README lists them)."""
    for name, (default, desc) in table.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=desc))


def spin_until_shutdown(make_node: Callable[[], object], args=None) -> None:
    rclpy.init(args=args)
    node = make_node()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except Exception:
        # SIGINT shuts the context down from rclpy's signal handler; landing between the executor's
        # check and its wait-set creation, that raises RCLError("context is not valid") instead of
        # ExternalShutdownException (seen once in CI, 2026-12-04). Only an error while the context is
        # still up is a real one.
        if rclpy.ok():
            raise
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# -- the one-process graphs of the CLIs (kairos sim-act, kairos replay): the act node here, a robot-side
# node (sim robot, bag player) in a child process, as on a robot.
def start_act_node(params: dict, prog: str):
    """The act node, configured with `params` and activated; None (after saying why) when configure
    fails. rclpy must be initialised."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from kairos_ros.act_node import ActNode
    act = ActNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    if act.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        act.destroy_node()
        rclpy.try_shutdown()
        print(f"{prog}: the act node failed to configure (see the error above)", file=sys.stderr)
        return None
    act.trigger_activate()
    return act


def spawn_node(executable: str, node_name: str, params: dict, ros_args=()):
    """(process, params file): a console script of this environment run as `node_name` with `params`
    (written to a temporary ROS 2 params file, removed by stop_child)."""
    import subprocess
    import tempfile
    import yaml
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump({node_name: {"ros__parameters": params}}, f)
    f.close()
    exe = os.path.join(os.path.dirname(sys.executable), executable)
    return subprocess.Popen([exe, "--ros-args", "--params-file", f.name, *ros_args]), f.name


def stop_child(proc, params_path: str, timeout: float = 20.0) -> None:
    import signal
    import subprocess
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    os.unlink(params_path)


EXECUTORS = ("single", "events", "multi")


def make_executor(kind: str = "single", context=None):
    """The rclpy executor that spins the act node (and the CLIs' monitors) in one process.

    single: rclpy's SingleThreadedExecutor, what `ros2 run` gives a node (rclpy.spin); the default.
    events: rclpy.experimental.EventsExecutor (rclpy >= Jazzy; its event queue is C++). Spin it with
    spin_once in a loop: its spin() in rclpy 9.1 held the interpreter lock while waiting.
    multi: MultiThreadedExecutor with 3 threads. Measured here (bench/sim_time_executors.py): with
    /clock at 100-1000 Hz (a simulator; use_sim_time) its threads take the interpreter lock from
    the act node's inference thread and the ticks' p99 rises from ~30 ms to over 200 ms, where it
    stays at 26-57 ms with single and events. The act node never blocks an executor callback
    (inference runs on its own worker thread), so one executor thread is all it needs."""
    if kind == "single":
        from rclpy.executors import SingleThreadedExecutor
        return SingleThreadedExecutor(context=context)
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError as e:
            raise ValueError("executor 'events' needs rclpy.experimental.EventsExecutor (ROS 2 Jazzy or "
                             "newer); use 'single'") from e
        return EventsExecutor(context=context)
    if kind == "multi":
        from rclpy.executors import MultiThreadedExecutor
        return MultiThreadedExecutor(num_threads=3, context=context)
    raise ValueError(f"unknown executor {kind!r}: one of {', '.join(EXECUTORS)}")


def add_executor_argument(ap) -> None:
    """--executor for the CLIs that spin the act node in their own process."""
    ap.add_argument("--executor", choices=EXECUTORS, default="single",
                    help="rclpy executor spinning the act node here: single (default, as ros2 run), events "
                         "(rclpy's EventsExecutor) or multi (3 threads; slow ticks under a fast /clock)")


def stop_act_node(act, executor, others=()) -> None:
    """Deactivate (a final hold goes out) and shut down the act node, then the executor, the nodes and rclpy."""
    act.trigger_deactivate()
    act.trigger_shutdown()
    executor.shutdown()
    for n in (*others, act):
        n.destroy_node()
    rclpy.try_shutdown()
