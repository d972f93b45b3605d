"""ros2 launch kairos_ros act.launch.py [config:=...] [artifact:=...] [backend:=auto] [namespace:=...] [use_sim_time:=false]

Starts the act node (a lifecycle node) with the YAML parameters, then configures and activates it.
The same graph runs without ROS 2 launch as `kairos act --config config/act.yaml`."""
import launch.events
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare("kairos_ros"), "config", "act.yaml"])
    args = [
        DeclareLaunchArgument("config", default_value=default_config, description="act node parameters (YAML)"),
        DeclareLaunchArgument("artifact", default_value="", description="checkpoint or exported artifact (kairos export); empty: untrained preset"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="inference backend: auto | torch | onnx | tensorrt"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
    ]
    act = LifecycleNode(
        package="kairos_ros", executable="act_node", name="kairos_act",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("config"),
                    {"artifact": LaunchConfiguration("artifact"), "backend": LaunchConfiguration("backend"),
                     "use_sim_time": LaunchConfiguration("use_sim_time")}])
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=launch.events.matches_action(act),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=act, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=launch.events.matches_action(act),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    return LaunchDescription([*args, act, activate, configure])
