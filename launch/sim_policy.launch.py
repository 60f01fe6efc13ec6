"""Let a trained policy drive the simulated robot: simulated robot + inference node.

    ros2 launch il_ros sim_policy.launch.py checkpoint:=runs/bc/policy.pt episodes:=20

policy.launch.py with the robot replaced by ``sim_robot``; each simulated episode's result
(``success``) is published on ``/sim_robot/status``. The inference node is a lifecycle node,
started as a ``LifecycleNode`` action and activated by its own ``auto_activate`` parameter
(Humble has no ``autostart``; see policy.launch.py). The simulated robot runs on the wall
clock and publishes no /clock, so there is no use_sim_time.
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
    """Simulated robot and inference node."""
    return LaunchDescription(
        [
            arg(
                "checkpoint",
                "Policy file (policy.pt from il-core train, or an .onnx from il-core export); "
                "refused if it was trained with a different robot mapping",
            ),
            *sim_args(
                10000, "; the default keeps evaluation away from the seeds sim_record records"
            ),
            arg(
                "auto_activate",
                "Configure and activate the inference lifecycle node at start-up; false "
                "leaves it for ros2 lifecycle set",
                "true",
                ["true", "false"],
            ),
            config_arg("inference_params_file", "inference.yaml", "Inference node parameters"),
            *required(
                [
                    sim_robot_node(),
                    il_node(
                        "inference",
                        "inference_params_file",
                        {
                            "checkpoint": value("checkpoint"),
                            "mapping_file": value("mapping_file"),
                            "auto_activate": value("auto_activate", bool),
                        },
                        lifecycle=True,
                    ),
                ]
            ),
        ]
    )
