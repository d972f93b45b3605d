"""ros2 launch kairos_ros sim_act.launch.py [config:=...] [artifact:=...] [task:=...] [episodes:=0]

The main job's graph: the simulated robot (sim_robot) and the act node (a lifecycle node, configured
then activated) with the parameters of config/sim_act.yaml; artifact overrides the config's when
given. Without ROS 2 launch the same graph runs as `kairos sim-act` (which also counts episodes and
writes a report)."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from kairos_ros.launch_util import configure_then_activate


def nodes(context):
    artifact = LaunchConfiguration("artifact").perform(context)
    sim = Node(package="kairos_ros", executable="sim_robot", name="sim_robot", output="screen",
               parameters=[LaunchConfiguration("config"), {"task": LaunchConfiguration("task"),
                                                          "episodes": LaunchConfiguration("episodes")}])
    act = LifecycleNode(package="kairos_ros", executable="act_node", name="kairos_act", namespace="",
                        output="screen",
                        parameters=[LaunchConfiguration("config")] + ([{"artifact": artifact}] if artifact else []))
    return [act, *configure_then_activate(act), sim]


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare("kairos_ros"), "config", "sim_act.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config, description="parameters of both nodes (YAML)"),
        DeclareLaunchArgument("artifact", default_value="", description="model directory (empty: the config's)"),
        DeclareLaunchArgument("task", default_value="button-press-topdown-v3", description="Meta-World task"),
        DeclareLaunchArgument("episodes", default_value="0", description="episodes to run (0: forever)"),
        OpaqueFunction(function=nodes),
    ])
