"""Record demonstrations in simulation: simulated robot + scripted expert + recorder.

    ros2 launch il_ros sim_record.launch.py output_dir:=/tmp/demos episodes:=25

record.launch.py with the robot and the human replaced: ``sim_robot`` steps a gymnasium env
(PointReach by default) behind the mapping's topics, and ``scripted_teleop`` drives it with
the env's privileged expert and starts and labels one recorder episode per simulated
episode. The recorder is the same node, with the same parameters, as on a real robot. The
simulated robot runs on the wall clock and publishes no /clock, so there is no use_sim_time.
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
    """Simulated robot, scripted teleop and recorder on one robot mapping."""
    mapping = {"mapping_file": value("mapping_file")}
    return LaunchDescription(
        [
            *sim_args(0),
            arg("output_dir", "Dataset directory, created or appended to", "il_ros_data"),
            config_arg(
                "teleop_params_file",
                "scripted_teleop.yaml",
                "Scripted teleop parameters (expert, action noise, how long to wait for the "
                "recorder)",
            ),
            config_arg("recorder_params_file", "recorder.yaml", "Recorder node parameters"),
            *required(
                [
                    sim_robot_node(),
                    # episode_control: the expert starts and labels the recorder's episodes.
                    il_node(
                        "scripted_teleop",
                        "teleop_params_file",
                        {**mapping, "env_id": value("env_id"), "episode_control": True},
                    ),
                    il_node(
                        "recorder",
                        "recorder_params_file",
                        {**mapping, "output_dir": value("output_dir")},
                    ),
                ]
            ),
        ]
    )
