"""ros2 launch kairos_ros sim_act.launch.py [config:=...] [artifact:=...] [task:=...] [episodes:=0]

The main job's graph: the simulated robot (sim_robot) and the act node (a lifecycle node, configured
then activated) with the parameters of config/sim_act.yaml. Without ROS 2 launch the same graph runs
in one process as `kairos sim-act` (which also counts episodes and writes a report)."""
import launch.events
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare("kairos_ros"), "config", "sim_act.yaml"])
    args = [
        DeclareLaunchArgument("config", default_value=default_config, description="parameters of both nodes (YAML)"),
        DeclareLaunchArgument("artifact", default_value="", description="model directory (empty: the config's)"),
        DeclareLaunchArgument("task", default_value="button-press-topdown-v3", description="Meta-World task"),
        DeclareLaunchArgument("episodes", default_value="0", description="episodes to run (0: forever)"),
    ]
    act_params = [LaunchConfiguration("config")]
    sim = Node(package="kairos_ros", executable="sim_robot", name="sim_robot", output="screen",
               parameters=[LaunchConfiguration("config"), {"task": LaunchConfiguration("task"),
                                                          "episodes": LaunchConfiguration("episodes")}])
    act = LifecycleNode(package="kairos_ros", executable="act_node", name="kairos_act", namespace="",
                        output="screen", parameters=act_params)
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=launch.events.matches_action(act),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=act, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=launch.events.matches_action(act),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    return LaunchDescription([*args, act, activate, configure, sim])
