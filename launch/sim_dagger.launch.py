"""One DAgger round in simulation: simulated robot + policy + scripted expert + DAgger node.

    ros2 launch il_ros sim_dagger.launch.py checkpoint:=runs/round0/policy.pt \
        output_dir:=/tmp/dagger1 episodes:=10

dagger.launch.py with the robot replaced by ``sim_robot`` and the human by
``scripted_teleop`` (the env's privileged expert), which publishes what it would do on
``expert_topic`` at every tick and starts and labels the DAgger node's episodes. Because the
scripted expert always publishes, the gate defaults to ``deviation``: the expert takes over
when its command departs from the policy's by more than ``deviation_threshold``. The
inference and DAgger nodes are lifecycle nodes, started as ``LifecycleNode`` actions and
activated by their own ``auto_activate`` parameter (Humble has no ``autostart``; see
policy.launch.py). The simulated robot runs on the wall clock and publishes no /clock, so
there is no use_sim_time.
"""

from launch import LaunchDescription

from il_ros.launch_helpers import (
    arg,
    config_arg,
    il_node,
    required,
    sim_args,
    sim_robot_node,
    value,
)


def generate_launch_description() -> LaunchDescription:
    """Simulated robot, inference (to policy_topic), scripted expert (to expert_topic), mux."""
    mapping = {"mapping_file": value("mapping_file")}
    auto = value("auto_activate", bool)
    return LaunchDescription(
        [
            arg(
                "checkpoint",
                "The current round's policy (policy.pt or .onnx); refused if it was trained "
                "with a different robot mapping",
            ),
            *sim_args(
                20000,
                "; the default keeps DAgger rounds away from the seeds sim_record and "
                "sim_policy use",
            ),
            arg(
                "output_dir",
                "Dataset directory of this round (one directory per round; rounds aggregate "
                "at training time)",
                "il_ros_dagger",
            ),
            arg(
                "gate_mode",
                "When the expert takes over: deviation (expert departs from the policy), "
                "deadman (never, with a scripted expert) or either",
                "deviation",
                ["deadman", "deviation", "either"],
            ),
            arg(
                "deviation_threshold",
                "Take-over threshold on the norm of expert - policy (action units)",
                "0.2",
            ),
            arg(
                "policy_topic",
                "Topic of the policy's command (inference -> DAgger node)",
                "/policy/cmd",
            ),
            arg(
                "expert_topic",
                "Topic of the expert's command (scripted teleop -> DAgger node)",
                "/expert/cmd",
            ),
            arg(
                "auto_activate",
                "Configure and activate the inference and DAgger lifecycle nodes at start-up; "
                "false leaves them for ros2 lifecycle set",
                "true",
                ["true", "false"],
            ),
            config_arg("inference_params_file", "inference.yaml", "Inference node parameters"),
            config_arg(
                "teleop_params_file",
                "scripted_teleop.yaml",
                "Scripted teleop parameters (expert, action noise)",
            ),
            config_arg(
                "dagger_params_file",
                "dagger.yaml",
                "DAgger node parameters (hysteresis, what to record)",
            ),
            *required(
                [
                    sim_robot_node(),
                    il_node(
                        "inference",
                        "inference_params_file",
                        {
                            **mapping,
                            "checkpoint": value("checkpoint"),
                            "command_topic": value("policy_topic"),
                            "auto_activate": auto,
                        },
                        lifecycle=True,
                    ),
                    # The expert publishes at every tick and starts and labels the episodes.
                    il_node(
                        "scripted_teleop",
                        "teleop_params_file",
                        {
                            **mapping,
                            "env_id": value("env_id"),
                            "command_topic": value("expert_topic"),
                            "episode_control": True,
                        },
                    ),
                    il_node(
                        "dagger",
                        "dagger_params_file",
                        {
                            **mapping,
                            "output_dir": value("output_dir"),
                            "policy_topic": value("policy_topic"),
                            "expert_topic": value("expert_topic"),
                            "gate_mode": value("gate_mode"),
                            "deviation_threshold": value("deviation_threshold", float),
                            "auto_activate": auto,
                        },
                        lifecycle=True,
                    ),
                ]
            ),
        ]
    )
