"""One DAgger round in simulation: simulated robot + policy + scripted expert + DAgger node.

    ros2 launch il_ros sim_dagger.launch.py checkpoint:=runs/round0/policy.pt \
        output_dir:=/tmp/dagger1 episodes:=10

dagger.launch.py with the robot replaced by ``sim_robot`` and the human by
``scripted_teleop`` (the env's privileged expert), which publishes what it would do on
``expert_topic`` at every tick and starts, labels and stops the DAgger node's episodes.
Because the scripted expert always publishes, the gate defaults to ``deviation``: the expert
takes over when its command departs from the policy's by more than
``deviation_threshold``. The inference and DAgger nodes are lifecycle nodes, started as
``LifecycleNode`` actions and activated by their own ``auto_activate`` parameter (Humble
has no ``autostart``; see policy.launch.py). The simulated robot runs on the wall clock and
publishes no /clock, so there is no use_sim_time.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Simulated robot, inference (to policy_topic), scripted expert (to expert_topic), mux."""
    mapping_file = ParameterValue(LaunchConfiguration("mapping_file"), value_type=str)
    env_id = ParameterValue(LaunchConfiguration("env_id"), value_type=str)
    policy_topic = ParameterValue(LaunchConfiguration("policy_topic"), value_type=str)
    expert_topic = ParameterValue(LaunchConfiguration("expert_topic"), value_type=str)
    auto_activate = LaunchConfiguration("auto_activate")
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
                description="Robot mapping YAML of the simulated robot, shared by all nodes; "
                "must match the one the checkpoint's data was recorded with",
            ),
            DeclareLaunchArgument(
                "env_id",
                default_value="il_ros/PointReach-v0",
                description="Gymnasium env id to simulate; its default expert is the "
                "scripted expert",
            ),
            DeclareLaunchArgument(
                "output_dir",
                default_value="il_ros_dagger",
                description="Dataset directory of this round (one directory per round; "
                "rounds aggregate at training time)",
            ),
            DeclareLaunchArgument(
                "episodes",
                default_value="0",
                description="Simulated episodes to run (0: until Ctrl-C); the nodes keep "
                "running afterwards",
            ),
            DeclareLaunchArgument(
                "seed",
                default_value="20000",
                description="Seed of the first simulated episode (episode i uses seed + i); "
                "the default keeps DAgger rounds away from the seeds sim_record.launch.py "
                "and sim_policy.launch.py use by default",
            ),
            DeclareLaunchArgument(
                "gate_mode",
                default_value="deviation",
                choices=["deadman", "deviation", "either"],
                description="When the expert takes over: deviation (expert departs from the "
                "policy), deadman (never, with a scripted expert) or either",
            ),
            DeclareLaunchArgument(
                "deviation_threshold",
                default_value="0.2",
                description="Take-over threshold on the norm of expert - policy (action "
                "units); write it as a float",
            ),
            DeclareLaunchArgument(
                "policy_topic",
                default_value="/policy/cmd",
                description="Topic of the policy's command (inference -> DAgger node)",
            ),
            DeclareLaunchArgument(
                "expert_topic",
                default_value="/expert/cmd",
                description="Topic of the expert's command (scripted teleop -> DAgger node)",
            ),
            DeclareLaunchArgument(
                "auto_activate",
                default_value="true",
                choices=["true", "false"],
                description="Configure and activate the inference and DAgger lifecycle nodes "
                "at start-up; false leaves them for ros2 lifecycle set",
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
            DeclareLaunchArgument(
                "teleop_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "scripted_teleop.yaml"]
                ),
                description="Scripted teleop parameters (expert, action noise)",
            ),
            DeclareLaunchArgument(
                "dagger_params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("il_ros"), "config", "dagger.yaml"]
                ),
                description="DAgger node parameters (hysteresis, what to record)",
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
                    {
                        "mapping_file": mapping_file,
                        "env_id": env_id,
                        "command_topic": expert_topic,
                        # The expert starts and labels the DAgger node's episodes.
                        "episode_control": True,
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
                        "deviation_threshold": ParameterValue(
                            LaunchConfiguration("deviation_threshold"), value_type=float
                        ),
                        "auto_activate": auto_activate,
                    },
                ],
            ),
        ]
    )
