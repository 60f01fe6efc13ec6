"""One DAgger round on a real robot: policy + human expert + DAgger mux/recorder.

    ros2 launch il_ros dagger.launch.py mapping_file:=/path/to/my_robot_mapping.yaml \
        checkpoint:=runs/round0/policy.pt output_dir:=/data/dagger_round1 teleop:=joy

The inference node publishes the policy's command on ``policy_topic`` (its
``command_topic``), the teleop publishes the expert's on ``expert_topic``, and the DAgger
node alone commands the robot (the mapping's command topic): the policy's command, or the
expert's while the expert intervenes (deadman held by default). Every step is recorded with
the expert's label where the expert commanded (a released deadman is no label), an
``is_intervention`` flag and the executed command. The inference and DAgger nodes are
lifecycle nodes, started as ``LifecycleNode`` actions and activated by their own
``auto_activate`` parameter (Humble has no ``autostart``; see policy.launch.py). After the
round, train on all rounds' datasets and hot-swap the policy with ``ros2 param set
/inference checkpoint <new>`` and ``ros2 service call /inference/reload
std_srvs/srv/Trigger``.
"""

from launch import LaunchDescription
from launch.substitutions import LaunchConfiguration

from il_ros.launch_helpers import (
    arg,
    config_arg,
    il_node,
    mapping_arg,
    required,
    share_file,
    value,
)

TELEOPS = ["joy", "twist", "spacemouse", "leader"]


def generate_launch_description() -> LaunchDescription:
    """Inference (to policy_topic), teleop (to expert_topic) and the DAgger mux/recorder."""
    common = {"mapping_file": value("mapping_file"), "use_sim_time": value("use_sim_time", bool)}
    auto = value("auto_activate", bool)
    return LaunchDescription(
        [
            mapping_arg(),
            arg(
                "checkpoint",
                "The current round's policy (policy.pt, or an .onnx from il-core export); "
                "refused if it was trained with a different robot mapping",
            ),
            arg(
                "output_dir",
                "Dataset directory of this round (one directory per round; rounds aggregate "
                "at training time)",
                "il_ros_dagger",
            ),
            arg(
                "teleop",
                "Expert input: joy (gamepad on /joy, start joy_node yourself), twist, "
                "spacemouse or leader; picks teleop_params_file",
                "joy",
                TELEOPS,
            ),
            arg(
                "gate_mode",
                "When the expert takes over: deadman (button held), deviation (expert departs "
                "from the policy) or either",
                "deadman",
                ["deadman", "deviation", "either"],
            ),
            arg(
                "policy_topic",
                "Topic of the policy's command (inference -> DAgger node)",
                "/policy/cmd",
            ),
            arg(
                "expert_topic",
                "Topic of the expert's command (teleop -> DAgger node)",
                "/expert/cmd",
            ),
            arg(
                "auto_activate",
                "Configure and activate the inference and DAgger lifecycle nodes at start-up; "
                "false leaves them for a lifecycle manager",
                "true",
                ["true", "false"],
            ),
            config_arg("inference_params_file", "inference.yaml", "Inference node parameters"),
            arg(
                "teleop_params_file",
                "Teleop node parameters (source, axes or joints, scales, deadman and episode "
                "buttons); default config/teleop_<teleop>.yaml",
                [share_file("config", "teleop_"), LaunchConfiguration("teleop"), ".yaml"],
            ),
            config_arg(
                "dagger_params_file",
                "dagger.yaml",
                "DAgger node parameters (thresholds, hysteresis, what to record)",
            ),
            arg(
                "use_sim_time",
                "Use the /clock topic (a simulator such as Gazebo) instead of the wall clock",
                "false",
                ["true", "false"],
            ),
            *required(
                [
                    il_node(
                        "inference",
                        "inference_params_file",
                        {
                            **common,
                            "checkpoint": value("checkpoint"),
                            "command_topic": value("policy_topic"),
                            "auto_activate": auto,
                        },
                        lifecycle=True,
                    ),
                    il_node(
                        "teleop",
                        "teleop_params_file",
                        {**common, "command_topic": value("expert_topic")},
                    ),
                    il_node(
                        "dagger",
                        "dagger_params_file",
                        {
                            **common,
                            "output_dir": value("output_dir"),
                            "policy_topic": value("policy_topic"),
                            "expert_topic": value("expert_topic"),
                            "gate_mode": value("gate_mode"),
                            "auto_activate": auto,
                        },
                        lifecycle=True,
                    ),
                ]
            ),
        ]
    )
