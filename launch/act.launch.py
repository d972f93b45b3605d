"""ros2 launch kairos_ros act.launch.py [config:=...] [artifact:=...] [backend:=...] [namespace:=...] [use_sim_time:=false]
    [executor:=single]

Starts the act node (a lifecycle node) with the YAML parameters, then configures and activates it.
artifact and backend override the config's only when given (an empty argument keeps what the
config says). The same graph runs without ROS 2 launch as `kairos act --config config/act.yaml`."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

from kairos_ros.launch_util import configure_then_activate


def act_node(context):
    given = {k: LaunchConfiguration(k).perform(context) for k in ("artifact", "backend")}
    overrides = {k: v for k, v in given.items() if v}
    overrides["use_sim_time"] = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1")
    act = LifecycleNode(
        package="kairos_ros", executable="act_node", name="kairos_act",
        namespace=LaunchConfiguration("namespace"), output="screen",
        arguments=["--executor", LaunchConfiguration("executor").perform(context)],
        parameters=[LaunchConfiguration("config"), overrides])
    return [act, *configure_then_activate(act)]


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare("kairos_ros"), "config", "act.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config, description="act node parameters (YAML)"),
        DeclareLaunchArgument("artifact", default_value="",
                              description="checkpoint or exported artifact (kairos export); empty: the config's"),
        DeclareLaunchArgument("backend", default_value="",
                              description="inference backend: auto | torch | onnx | tensorrt; empty: the config's"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
        DeclareLaunchArgument("executor", default_value="single",
                              description="rclpy executor of the node: single | events | multi (README: "
                                          "Under a simulator's clock)"),
        OpaqueFunction(function=act_node),
    ])
