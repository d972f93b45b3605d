"""ros2 launch kairos_ros record.launch.py [output_dir:=data/bags] [config:=...]

Starts the recorder: camera, joint states, commanded trajectories, instruction and episode events
into rosbag2 (mcap) episodes, one closed segment per second. Label episodes by publishing
"start <task>", "success", "failure" or "stop" on /recorder/label (or let the sim robot's episode
events drive them). Convert them to training data with `kairos dataset from-bags` (issue 9).
output_dir overrides the config's only when given."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def recorder(context):
    out = LaunchConfiguration("output_dir").perform(context)
    return [Node(package="kairos_ros", executable="recorder", name="recorder", output="screen",
                 parameters=[LaunchConfiguration("config"), *([{"output_dir": out}] if out else [])])]


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare("kairos_ros"), "config", "record.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config, description="recorder parameters (YAML)"),
        DeclareLaunchArgument("output_dir", default_value="", description="where episodes go (empty: the config's)"),
        OpaqueFunction(function=recorder),
    ])
