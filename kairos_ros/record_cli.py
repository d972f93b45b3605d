"""`kairos record [--config config/record.yaml] [--output-dir DIR] [--ros-args ...]`: the recorder node
in one process, without `ros2 launch` (the node launch/record.launch.py starts).

The params file's names are checked against the node's (an unknown name is an error, before any
topic is touched); `--output-dir` overrides its output_dir, and further ROS arguments (e.g.
`--ros-args -p storage:=sqlite3`) pass through. SIGINT/SIGTERM close a running episode as
"interrupted" and exit cleanly; a crash keeps every closed one-second segment."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos record", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/record.yaml", help="ROS 2 params file with a 'recorder' section")
    ap.add_argument("--output-dir", help="overrides the config's output_dir")
    args, ros_args = ap.parse_known_args(argv)
    from kairos_ros.act_cli import load_params
    from kairos_ros.node_util import spin_until_shutdown
    from kairos_ros.recorder_node import PARAMETERS, RecorderNode
    load_params(args.config, "recorder", PARAMETERS)            # unknown names: a clear error, now
    rcl_args = ["recorder", "--ros-args", "--params-file", args.config]
    if args.output_dir:
        rcl_args += ["-p", f"output_dir:={args.output_dir}"]
    spin_until_shutdown(RecorderNode, rcl_args + ros_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
