"""What the launch files share (imported by launch/*.launch.py only: `launch` and `launch_ros` come
with a ROS 2 install and have no wheel, so nothing else here imports this module)."""
import launch.events
from launch.actions import EmitEvent, RegisterEventHandler
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition


def configure_then_activate(node):
    """[the handler that activates `node` once it is inactive, the event that configures it]: put
    both in the launch description after the LifecycleNode action itself."""
    def change(transition):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=launch.events.matches_action(node),
                                           transition_id=transition))
    activate = RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, goal_state="inactive",
                                                      entities=[change(Transition.TRANSITION_ACTIVATE)]))
    return [activate, change(Transition.TRANSITION_CONFIGURE)]
