"""Record demonstrations on a real robot: human teleop + recorder.

    ros2 launch il_ros record.launch.py mapping_file:=/path/to/my_robot_mapping.yaml \
        output_dir:=/data/pick_v1 teleop:=joy

The teleop node turns a gamepad (``teleop:=joy``; run ``ros2 run joy joy_node`` beside it),
a spacemouse or keyboard teleop (``teleop:=twist``, ``teleop:=spacemouse`` for a 6-DoF
servo command) or a leader arm (``teleop:=leader``) into the robot's command, publishes the
deadman state and the episode-control buttons; the recorder samples every mapped topic and
the command actually sent at the record rate into a crash-safe dataset in ``output_dir``.
A teleop whose parameters cannot drive the mapping's command refuses to start, and the
launch then stops. The input drivers and the robot's own drivers are not started here.
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
    """Teleop and recorder, both reading the same robot mapping."""
    common = {"mapping_file": value("mapping_file"), "use_sim_time": value("use_sim_time", bool)}
    return LaunchDescription(
        [
            mapping_arg(),
            arg(
                "teleop",
                "Human input: joy (gamepad on /joy, start joy_node yourself), twist "
                "(spacemouse / keyboard teleop, 2-D), spacemouse (6-D twist to a servo "
                "command) or leader (a leader arm's joint states); picks teleop_params_file",
                "joy",
                TELEOPS,
            ),
            arg(
                "output_dir",
                "Dataset directory, created or appended to (relative paths are relative to "
                "the directory ros2 launch runs in)",
                "il_ros_data",
            ),
            arg(
                "teleop_params_file",
                "Teleop node parameters (source, axes or joints, scales, deadman and episode "
                "buttons); default config/teleop_<teleop>.yaml",
                # Joined outside PathJoinSubstitution: works on every Humble.
                [share_file("config", "teleop_"), LaunchConfiguration("teleop"), ".yaml"],
            ),
            config_arg(
                "recorder_params_file",
                "recorder.yaml",
                "Recorder node parameters (record rate, flush interval, maximum command age, "
                "episode length limit)",
            ),
            arg(
                "use_sim_time",
                "Use the /clock topic (a simulator such as Gazebo) instead of the wall clock "
                "for stamps and rates",
                "false",
                ["true", "false"],
            ),
            *required(
                [
                    il_node("teleop", "teleop_params_file", common),
                    il_node(
                        "recorder",
                        "recorder_params_file",
                        {**common, "output_dir": value("output_dir")},
                    ),
                ]
            ),
        ]
    )
