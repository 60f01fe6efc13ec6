"""Let a trained policy drive the simulated robot: simulated robot + inference node.

    ros2 launch il_ros sim_policy.launch.py checkpoint:=runs/bc/policy.pt episodes:=20

policy.launch.py with the robot replaced by ``sim_robot``; each simulated episode's result
(``success``) is published on ``/sim_robot/status``. The inference node is a lifecycle node,
started as a ``LifecycleNode`` action and activated by its own ``auto_activate`` parameter
(Humble has no ``autostart``; see policy.launch.py). The simulated robot runs on the wall
clock and publishes no /clock, so there is no use_sim_time.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Simulated robot and inference node on one robot mapping."""
    mapping_file = ParameterValue(LaunchConfiguration("mapping_file"), value_type=str)
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
                description="Robot mapping YAML of the simulated robot; must match the one "
                "the checkpoint's data was recorded with",
            ),
            DeclareLaunchArgument(
                "env_id",
                default_value="il_ros/PointReach-v0",
                description="Gymnasium env id to simulate",
            ),
            DeclareLaunchArgument(
                "episodes",
                default_value="0",
                description="Simulated episodes to run (0: until Ctrl-C); the nodes keep "
                "running afterwards",
            ),
            DeclareLaunchArgument(
                "seed",
                default_value="10000",
                description="Seed of the first simulated episode (episode i uses seed + i); "
                "the default keeps evaluation away from the seeds sim_record.launch.py "
                "records by default",
            ),
            DeclareLaunchArgument(
                "auto_activate",
                default_value="true",
                choices=["true", "false"],
                description="Configure and activate the inference lifecycle node at "
                "start-up; false leaves it for ros2 lifecycle set",
            ),
            DeclareLaunchArgument(
                "sim_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "sim_robot.yaml"]
                ),
                description="Simulated robot parameters",
            ),
            DeclareLaunchArgument(
                "inference_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "inference.yaml"]
                ),
                description="Inference node parameters",
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
                        "env_id": ParameterValue(LaunchConfiguration("env_id"), value_type=str),
                        "seed": ParameterValue(LaunchConfiguration("seed"), value_type=int),
                        "max_episodes": ParameterValue(
                            LaunchConfiguration("episodes"), value_type=int
                        ),
                    },
                ],
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
                        "auto_activate": LaunchConfiguration("auto_activate"),
                    },
                ],
            ),
        ]
    )
