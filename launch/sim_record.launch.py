"""Record demonstrations in simulation: simulated robot + scripted expert + recorder.

    ros2 launch il_ros sim_record.launch.py output_dir:=/tmp/demos episodes:=25

record.launch.py with the robot and the human replaced: ``sim_robot`` steps a gymnasium env
(PointReach by default) behind the mapping's topics, and ``scripted_teleop`` drives it with
the env's privileged expert and starts, labels and stops one recorder episode per simulated
episode. The recorder is the same node, with the same parameters, as on a real robot. The
simulated robot runs on the wall clock and publishes no /clock, so there is no use_sim_time.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Simulated robot, scripted teleop and recorder on one robot mapping."""
    mapping_file = ParameterValue(LaunchConfiguration("mapping_file"), value_type=str)
    env_id = ParameterValue(LaunchConfiguration("env_id"), value_type=str)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "mapping_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "point_reach_mapping.yaml"]
                ),
                description="Robot mapping YAML of the simulated robot (observation topics "
                "<-> env observation keys, command topic); e.g. "
                "config/point_reach_camera_mapping.yaml adds the rendered camera",
            ),
            DeclareLaunchArgument(
                "env_id",
                default_value="il_ros/PointReach-v0",
                description="Gymnasium env id to simulate; the scripted expert is the env's "
                "default expert (set expert in teleop_params_file to choose another)",
            ),
            DeclareLaunchArgument(
                "output_dir",
                default_value="il_ros_data",
                description="Dataset directory, created or appended to",
            ),
            DeclareLaunchArgument(
                "episodes",
                default_value="0",
                description="Simulated episodes to run, so episodes to record (0: until "
                "Ctrl-C); the nodes keep running afterwards",
            ),
            DeclareLaunchArgument(
                "seed",
                default_value="0",
                description="Seed of the first simulated episode; episode i uses seed + i",
            ),
            DeclareLaunchArgument(
                "sim_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "sim_robot.yaml"]
                ),
                description="Simulated robot parameters (env kwargs, reset delay, command "
                "timeout, camera rate)",
            ),
            DeclareLaunchArgument(
                "teleop_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "scripted_teleop.yaml"]
                ),
                description="Scripted teleop parameters (expert, action noise, how long to "
                "wait for the recorder)",
            ),
            DeclareLaunchArgument(
                "recorder_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "recorder.yaml"]
                ),
                description="Recorder node parameters",
            ),
            Node(
                package="il_ros",
                executable="sim_robot",
                name="sim_robot",
                output="screen",
                parameters=[
                    LaunchConfiguration("sim_params_file"),
                    {
                        "mapping_file": mapping_file,
                        "env_id": env_id,
                        "seed": ParameterValue(LaunchConfiguration("seed"), value_type=int),
                        "max_episodes": ParameterValue(
                            LaunchConfiguration("episodes"), value_type=int
                        ),
                    },
                ],
            ),
            Node(
                package="il_ros",
                executable="scripted_teleop",
                name="scripted_teleop",
                output="screen",
                parameters=[
                    LaunchConfiguration("teleop_params_file"),
                    # episode_control: the expert starts and labels the recorder's episodes.
                    {"mapping_file": mapping_file, "env_id": env_id, "episode_control": True},
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
                    },
                ],
            ),
        ]
    )
