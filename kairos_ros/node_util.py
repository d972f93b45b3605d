"""What every kairos_ros node does the same way: declare its PARAMETERS table with descriptors, and
(for the plain, non-lifecycle nodes) spin until SIGINT/SIGTERM and shut down cleanly."""
from __future__ import annotations

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
