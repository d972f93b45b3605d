"""ros2 launch kairos_ros replay.launch.py bags:="[data/bags/episode_000000, data/bags/episode_000001]" [rate:=1.0] [config:=...] [artifact:=...]
    [executor:=single]

Recorded episodes played back onto their topics (bag_player: camera, joint states, each episode's
task text, /clock at the recorded time slowed by `rate`) into the act node, which follows /clock
(use_sim_time) and has its memory reset at each episode start; parameters of config/replay.yaml
(the player) and `config` (the act node, default config/sim_act.yaml). Record the act node's
commands beside it (record.launch.py), or run `kairos replay`, which does all of this without ROS 2
launch and scores the commands against the recorded motion."""
import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from kairos_ros.launch_util import configure_then_activate


def nodes(context):
    text = LaunchConfiguration("bags").perform(context).strip()
    bags = yaml.safe_load(text) if text.startswith("[") else [b for b in text.split(",") if b.strip()]
    if not bags:
        raise RuntimeError('replay.launch.py needs bags:="[path/to/episode, ...]"')
    artifact = LaunchConfiguration("artifact").perform(context)
    act = LifecycleNode(package="kairos_ros", executable="act_node", name="kairos_act", namespace="", output="screen",
                        arguments=["--executor", LaunchConfiguration("executor").perform(context)],
                        parameters=[LaunchConfiguration("config"), {"use_sim_time": True},
                                    *([{"artifact": artifact}] if artifact else [])])
    player = Node(package="kairos_ros", executable="bag_player", name="bag_player", output="screen",
                  parameters=[LaunchConfiguration("player_config"),
                              {"bags": [str(b).strip() for b in bags], "rate": float(LaunchConfiguration("rate").perform(context))}])
    return [act, *configure_then_activate(act), player]


def generate_launch_description():
    share = FindPackageShare("kairos_ros")
    return LaunchDescription([
        DeclareLaunchArgument("bags", description="episode or bag directories, as a YAML list or comma-separated"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed (the /clock slows to match)"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "sim_act.yaml"]),
                              description="act node parameters (YAML)"),
        DeclareLaunchArgument("player_config", default_value=PathJoinSubstitution([share, "config", "replay.yaml"]),
                              description="bag_player parameters (YAML)"),
        DeclareLaunchArgument("artifact", default_value="", description="model directory (empty: the config's)"),
        DeclareLaunchArgument("executor", default_value="single",
                              description="rclpy executor of the act node: single | events | multi"),
        OpaqueFunction(function=nodes),
    ])
