"""`kairos act --config config/act.yaml`: the act node graph in one process, without `ros2 launch`.

Loads the node's parameters from a ROS 2 params file (unknown names are errors), configures and
activates the node, spins it, and on SIGINT/SIGTERM deactivates it (a final hold is published) and
exits cleanly."""
from __future__ import annotations

import argparse
import signal
import sys

import yaml

from kairos_ros.node_util import add_executor_argument, make_executor


def load_params(path: str, node_name: str = "kairos_act", known=None) -> dict:
    """The node's `ros__parameters` from a ROS 2 params file; names outside `known` (default: the
    act node's PARAMETERS) are an error."""
    if known is None:
        from kairos_ros.act_node import PARAMETERS as known
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    section = doc.get(node_name) or doc.get(f"/{node_name}") or doc.get("/**") or {}
    params = section.get("ros__parameters")
    if params is None:
        raise ValueError(f"{path}: expected '{node_name}: ros__parameters: {{...}}'")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown parameters {unknown}; known: {sorted(known)}")
    return params


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos act", description=__doc__)
    ap.add_argument("--config", default="config/act.yaml")
    ap.add_argument("--artifact", help="overrides the config's artifact (model directory)")
    ap.add_argument("--namespace", default="")
    add_executor_argument(ap)
    args, ros_args = ap.parse_known_args(argv)
    params = load_params(args.config)
    if args.artifact:
        params["artifact"] = args.artifact

    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from kairos_ros.act_node import ActNode

    rclpy.init(args=["kairos_act", *ros_args], signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = ActNode(namespace=args.namespace,
                   parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().fatal("configure failed; see the error above")
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    node.trigger_activate()
    ex = make_executor(args.executor)
    ex.add_node(node)
    try:
        while rclpy.ok() and not stop["now"]:
            ex.spin_once(timeout_sec=0.1)
    finally:
        node.trigger_deactivate()
        node.trigger_shutdown()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
