"""Record demonstrations on a real robot: human teleop + recorder.

    ros2 launch il_ros record.launch.py mapping_file:=/path/to/my_robot_mapping.yaml \
        output_dir:=/data/pick_v1 teleop:=joy

The teleop node turns a gamepad (``teleop:=joy``; run ``ros2 run joy joy_node`` beside it)
or a spacemouse / keyboard teleop (``teleop:=twist``) into the robot's command, publishes the
deadman state and the episode-control buttons; the recorder samples every mapped topic and
the command actually sent at the record rate into a crash-safe dataset in ``output_dir``.
The input drivers and the robot's own drivers are not started here.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Teleop (joy or twist) and recorder, both reading the same robot mapping."""
    teleop = LaunchConfiguration("teleop")
    mapping_file = ParameterValue(LaunchConfiguration("mapping_file"), value_type=str)
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "teleop",
                default_value="joy",
                choices=["joy", "twist"],
                description="Human input device: joy (gamepad on /joy, start joy_node "
                "yourself) or twist (spacemouse / keyboard teleop on /spacenav/twist); picks "
                "the default teleop_params_file",
            ),
            DeclareLaunchArgument(
                "mapping_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "point_reach_mapping.yaml"]
                ),
                description="Robot mapping YAML (observation topics <-> keys, command topic), "
                "shared by teleop and recorder and stored in the dataset; the default is the "
                "simulated PointReach robot's, give your robot's",
            ),
            DeclareLaunchArgument(
                "output_dir",
                default_value="il_ros_data",
                description="Dataset directory, created or appended to (relative paths are "
                "relative to the directory ros2 launch runs in)",
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
                "recorder_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "recorder.yaml"]
                ),
                description="Recorder node parameters (record rate, flush interval, maximum "
                "command age, episode length limit)",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                choices=["true", "false"],
                description="Use the /clock topic (a simulator such as Gazebo) instead of the "
                "wall clock for stamps and rates",
            ),
            Node(
                package="il_ros",
                executable="teleop",
                name="teleop",
                output="screen",
                parameters=[
                    LaunchConfiguration("teleop_params_file"),
                    {"mapping_file": mapping_file, "use_sim_time": use_sim_time},
                ],
            ),
            Node(
                package="il_ros",
                executable="recorder",
                name="recorder",
                output="screen",
                parameters=[
                    LaunchConfiguration("recorder_params_file"),
                    {
                        "mapping_file": mapping_file,
                        "output_dir": ParameterValue(
                            LaunchConfiguration("output_dir"), value_type=str
                        ),
                        "use_sim_time": use_sim_time,
                    },
                ],
            ),
        ]
    )
