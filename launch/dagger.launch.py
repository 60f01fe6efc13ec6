"""One DAgger round on a real robot: policy + human expert + intervention gate and recorder.

    ros2 launch il_ros dagger.launch.py checkpoint:=/path/to/round0/policy.pt \
        mapping_file:=/path/to/my_robot_mapping.yaml output_dir:=/data/dagger_round1

Wiring (HG-DAgger): the inference node publishes the policy's command on ``policy_topic``
instead of the robot's command topic, the teleop publishes the expert's command on
``expert_topic`` and its deadman on ``/il_ros/deadman``; the DAgger node is the only one
commanding the robot: the policy's command, or the expert's while the expert intervenes, and
it records every step with the expert's label and an ``is_intervention`` flag into
``output_dir``. The redirection uses the nodes' ``command_topic`` parameters, not
remappings, because the robot's command topic is whatever the mapping file names.

``gate_mode`` defaults to ``deadman``: with a human on a joystick the expert drives while the
deadman is held. ``deviation`` and ``either`` suit an expert that always publishes what it
would do (a scripted expert, a leader arm); an idle joystick publishing zeros would read as
disagreement.

The inference and DAgger nodes are lifecycle nodes, started as ``LifecycleNode`` actions and
activated by their own ``auto_activate`` parameter (Humble has no ``autostart``; see
policy.launch.py). After the round, train on all rounds' datasets and hot-swap the policy
with ``ros2 param set /inference checkpoint <new>`` and ``ros2 service call
/inference/reload std_srvs/srv/Trigger``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Inference (to policy_topic), teleop (to expert_topic) and the DAgger mux/recorder."""
    teleop = LaunchConfiguration("teleop")
    mapping_file = ParameterValue(LaunchConfiguration("mapping_file"), value_type=str)
    policy_topic = ParameterValue(LaunchConfiguration("policy_topic"), value_type=str)
    expert_topic = ParameterValue(LaunchConfiguration("expert_topic"), value_type=str)
    auto_activate = LaunchConfiguration("auto_activate")
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "checkpoint",
                description="The current round's policy checkpoint (policy.pt); refused if "
                "it was trained with a different robot mapping",
            ),
            DeclareLaunchArgument(
                "mapping_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "point_reach_mapping.yaml"]
                ),
                description="Robot mapping YAML (observation topics <-> keys, command topic), "
                "shared by all three nodes; the default is the simulated PointReach robot's",
            ),
            DeclareLaunchArgument(
                "output_dir",
                default_value="il_ros_dagger",
                description="Dataset directory of this round (one directory per round; "
                "rounds aggregate at training time)",
            ),
            DeclareLaunchArgument(
                "teleop",
                default_value="joy",
                choices=["joy", "twist"],
                description="Expert input device: joy (gamepad on /joy, start joy_node "
                "yourself) or twist (spacemouse / keyboard teleop); picks the default "
                "teleop_params_file",
            ),
            DeclareLaunchArgument(
                "gate_mode",
                default_value="deadman",
                choices=["deadman", "deviation", "either"],
                description="When the expert takes over: deadman (button held), deviation "
                "(expert departs from the policy) or either",
            ),
            DeclareLaunchArgument(
                "policy_topic",
                default_value="/policy/cmd",
                description="Topic of the policy's command (inference -> DAgger node)",
            ),
            DeclareLaunchArgument(
                "expert_topic",
                default_value="/expert/cmd",
                description="Topic of the expert's command (teleop -> DAgger node)",
            ),
            DeclareLaunchArgument(
                "auto_activate",
                default_value="true",
                choices=["true", "false"],
                description="Configure and activate the inference and DAgger lifecycle nodes "
                "at start-up; false leaves them for a lifecycle manager",
            ),
            DeclareLaunchArgument(
                "inference_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "inference.yaml"]
                ),
                description="Inference node parameters",
            ),
            DeclareLaunchArgument(
                "teleop_params_file",
                # Concatenated outside PathJoinSubstitution: a list as one path component
                # needs a 2025 launch (ros2/launch#838); this works on every Humble.
                default_value=[
                    PathJoinSubstitution([FindPackageShare("il_ros"), "config", "teleop_"]),
                    teleop,
                    ".yaml",
                ],
                description="Teleop node parameters (axes, scales, deadman and episode "
                "buttons); default config/teleop_<teleop>.yaml",
            ),
            DeclareLaunchArgument(
                "dagger_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "dagger.yaml"]
                ),
                description="DAgger node parameters (thresholds, hysteresis, what to record)",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                choices=["true", "false"],
                description="Use the /clock topic (a simulator such as Gazebo) instead of the "
                "wall clock",
            ),
            LifecycleNode(
                package="il_ros",
                executable="inference",
                name="inference",
                namespace="",
                output="screen",
                parameters=[
                    LaunchConfiguration("inference_params_file"),
                    {
                        "checkpoint": ParameterValue(
                            LaunchConfiguration("checkpoint"), value_type=str
                        ),
                        "mapping_file": mapping_file,
                        "command_topic": policy_topic,
                        "auto_activate": auto_activate,
                        "use_sim_time": use_sim_time,
                    },
                ],
            ),
            Node(
                package="il_ros",
                executable="teleop",
                name="teleop",
                output="screen",
                parameters=[
                    LaunchConfiguration("teleop_params_file"),
                    {
                        "mapping_file": mapping_file,
                        "command_topic": expert_topic,
                        "use_sim_time": use_sim_time,
                    },
                ],
            ),
            LifecycleNode(
                package="il_ros",
                executable="dagger",
                name="dagger",
                namespace="",
                output="screen",
                parameters=[
                    LaunchConfiguration("dagger_params_file"),
                    {
                        "mapping_file": mapping_file,
                        "output_dir": ParameterValue(
                            LaunchConfiguration("output_dir"), value_type=str
                        ),
                        "policy_topic": policy_topic,
                        "expert_topic": expert_topic,
                        "gate_mode": ParameterValue(
                            LaunchConfiguration("gate_mode"), value_type=str
                        ),
                        "auto_activate": auto_activate,
                        "use_sim_time": use_sim_time,
                    },
                ],
            ),
        ]
    )
