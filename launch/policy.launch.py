"""Let a trained policy drive a real robot: the inference node.

    ros2 launch il_ros policy.launch.py checkpoint:=/path/to/policy.pt \
        mapping_file:=/path/to/my_robot_mapping.yaml

The inference node is a lifecycle node. It is started as a ``launch_ros`` ``LifecycleNode``
(so launch's lifecycle events and ``ros2 lifecycle`` address it) and, with
``auto_activate:=true`` (the default), configures and activates itself through its own
``auto_activate`` parameter: that works on Humble, whose ``LifecycleNode`` action has no
``autostart``, and on every later distribution. With ``auto_activate:=false`` it waits
unconfigured for a lifecycle manager or ``ros2 lifecycle set /inference configure`` then
``activate``. Deactivating it (or Ctrl-C) commands the mapping's safe stop.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """The inference node, commanding the mapping's command topic."""
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "checkpoint",
                description="Trained policy checkpoint (policy.pt from il-core train); "
                "refused if it was trained with a different robot mapping",
            ),
            DeclareLaunchArgument(
                "mapping_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "point_reach_mapping.yaml"]
                ),
                description="Robot mapping YAML (observation topics <-> keys, command topic); "
                "must match the one the checkpoint was recorded with; the default is the "
                "simulated PointReach robot's",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "inference.yaml"]
                ),
                description="Inference node parameters (inference mode, action steps per "
                "chunk, device, threads)",
            ),
            DeclareLaunchArgument(
                "auto_activate",
                default_value="true",
                choices=["true", "false"],
                description="Configure and activate the lifecycle node at start-up; false "
                "leaves it unconfigured for a lifecycle manager or ros2 lifecycle set",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                choices=["true", "false"],
                description="Use the /clock topic (a simulator such as Gazebo) instead of the "
                "wall clock for the control timer and observation ages",
            ),
            LifecycleNode(
                package="il_ros",
                executable="inference",
                name="inference",
                namespace="",
                output="screen",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "checkpoint": ParameterValue(
                            LaunchConfiguration("checkpoint"), value_type=str
                        ),
                        "mapping_file": ParameterValue(
                            LaunchConfiguration("mapping_file"), value_type=str
                        ),
                        "auto_activate": LaunchConfiguration("auto_activate"),
                        "use_sim_time": LaunchConfiguration("use_sim_time"),
                    },
                ],
            ),
        ]
    )
