"""Let a trained policy drive a real robot: the inference node.

    ros2 launch il_ros policy.launch.py mapping_file:=/path/to/my_robot_mapping.yaml \
        checkpoint:=/path/to/policy.onnx

``checkpoint`` is a ``policy.pt`` from ``il-core train`` (the node then needs torch) or an
export from ``il-core export`` (an ``.onnx`` runs on ONNX Runtime: no torch on the robot).
The inference node is a lifecycle node, started as a ``launch_ros`` ``LifecycleNode`` (so
launch's lifecycle events and ``ros2 lifecycle`` address it) and, with
``auto_activate:=true`` (the default), configured and activated through its own
``auto_activate`` parameter: that works on Humble, whose ``LifecycleNode`` action has no
``autostart``, and on every later distribution. With ``auto_activate:=false`` it waits
unconfigured for a lifecycle manager or ``ros2 lifecycle set /inference configure`` then
``activate``. Deactivating it (or Ctrl-C) commands the mapping's safe stop.
"""

from launch import LaunchDescription

from il_ros.launch_helpers import arg, config_arg, il_node, mapping_arg, required, value


def generate_launch_description() -> LaunchDescription:
    """The inference node, commanding the mapping's command topic."""
    return LaunchDescription(
        [
            mapping_arg(),
            arg(
                "checkpoint",
                "Policy file: policy.pt from il-core train, or an .onnx from il-core export "
                "(no torch needed); refused if it was trained with a different robot mapping",
            ),
            config_arg(
                "params_file",
                "inference.yaml",
                "Inference node parameters (inference mode, action steps per chunk, device, "
                "threads)",
            ),
            arg(
                "auto_activate",
                "Configure and activate the lifecycle node at start-up; false leaves it "
                "unconfigured for a lifecycle manager or ros2 lifecycle set",
                "true",
                ["true", "false"],
            ),
            arg(
                "use_sim_time",
                "Use the /clock topic (a simulator such as Gazebo) instead of the wall clock "
                "for the control timer and observation ages",
                "false",
                ["true", "false"],
            ),
            *required(
                [
                    il_node(
                        "inference",
                        "params_file",
                        {
                            "checkpoint": value("checkpoint"),
                            "mapping_file": value("mapping_file"),
                            "auto_activate": value("auto_activate", bool),
                            "use_sim_time": value("use_sim_time", bool),
                        },
                        lifecycle=True,
                    )
                ]
            ),
        ]
    )
