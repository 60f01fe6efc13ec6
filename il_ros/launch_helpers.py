"""Building blocks of the package's launch files (``launch/*.launch.py``).

Imported only by launch files (it needs ``launch`` and ``launch_ros``, which a node never
does). Written against the launch API of ROS 2 Humble (launch 1.0, launch_ros 0.19) and
checked with it in the tests: lifecycle nodes get ``namespace=""`` (Humble requires it) and
are activated by their own ``auto_activate`` parameter (Humble's ``LifecycleNode`` action has
no ``autostart``); paths are joined outside ``PathJoinSubstitution`` where a component is
itself a substitution list (that needs a 2025 launch, ros2/launch#838).

Every node is started with its parameter file from the installed ``share/il_ros/config``
(a ``*_params_file`` argument points elsewhere) and then the launch file's overrides, and
every node is *required*: if one exits with an error (a bad mapping, a teleop that cannot
drive the robot's command), the whole launch shuts down with that node's name as the
reason, so a recorder never keeps running behind a teleop that refused to start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from launch.actions import DeclareLaunchArgument, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "il_ros"


def share_file(*parts: Any) -> PathJoinSubstitution:
    """A path in the installed package's share directory, e.g. ``share_file("config", x)``."""
    return PathJoinSubstitution([FindPackageShare(PACKAGE), *parts])


def arg(
    name: str,
    description: str,
    default: Any = None,
    choices: Sequence[str] | None = None,
) -> DeclareLaunchArgument:
    """A launch argument; without ``default`` it is required (launch names it if missing)."""
    kwargs: dict[str, Any] = {"description": description}
    if default is not None:
        kwargs["default_value"] = default
    if choices is not None:
        kwargs["choices"] = list(choices)
    return DeclareLaunchArgument(name, **kwargs)


def config_arg(name: str, filename: str, description: str) -> DeclareLaunchArgument:
    """A parameter-file argument defaulting to ``share/il_ros/config/<filename>``."""
    return arg(name, description, share_file("config", filename))


def mapping_arg(default: str | None = None) -> DeclareLaunchArgument:
    """``mapping_file``: required on a robot, a config of the package for the simulator."""
    text = (
        "Robot mapping YAML (observation topics <-> keys, command topic), shared by every "
        "node and stored in datasets and checkpoints"
    )
    if default is None:
        return arg("mapping_file", text + "; required: give your robot's")
    return arg("mapping_file", text, share_file("config", default))


def value(name: str, value_type: type = str) -> ParameterValue:
    """Launch argument ``name`` as a parameter value of ``value_type``.

    Without a type, launch_ros YAML-parses substitution results: a path like ``1e3`` or an
    output directory named ``true`` would become a number or a bool.
    """
    return ParameterValue(LaunchConfiguration(name), value_type=value_type)


def il_node(
    executable: str,
    params_file_arg: str,
    overrides: dict[str, Any],
    *,
    lifecycle: bool = False,
) -> Node:
    """One il_ros node: its parameter file, then ``overrides``; output to the screen."""
    cls = LifecycleNode if lifecycle else Node
    extra: dict[str, Any] = {"namespace": ""} if lifecycle else {}
    return cls(
        package=PACKAGE,
        executable=executable,
        name=executable,
        output="screen",
        parameters=[LaunchConfiguration(params_file_arg), overrides],
        **extra,
    )


def _shutdown_on_failure(event: Any, context: Any) -> list[Any]:
    if event.returncode in (0, None):
        return []
    return [Shutdown(reason=f"{event.process_name} exited with code {event.returncode}")]


def required(nodes: Iterable[Node]) -> list[Any]:
    """The nodes, each followed by a handler that ends the launch if it fails."""
    out: list[Any] = []
    for node in nodes:
        out.append(node)
        out.append(
            RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_shutdown_on_failure))
        )
    return out


# -- the simulated robot of the sim_*.launch.py files ---------------------------------------


def sim_args(seed: int, seed_note: str = "") -> list[DeclareLaunchArgument]:
    """Arguments every ``sim_*`` launch file takes: mapping, env, episodes, seed, params."""
    return [
        mapping_arg("point_reach_mapping.yaml"),
        arg(
            "env_id",
            "Gymnasium env id to simulate (the robot) whose default expert is the scripted "
            "expert; the mapping's keys must be the env's observation keys",
            "il_ros/PointReach-v0",
        ),
        arg(
            "episodes",
            "Simulated episodes to run (0: until Ctrl-C); the nodes keep running afterwards",
            "0",
        ),
        arg(
            "seed",
            "Seed of the first simulated episode (episode i uses seed + i)" + seed_note,
            str(seed),
        ),
        config_arg(
            "sim_params_file",
            "sim_robot.yaml",
            "Simulated robot parameters (env kwargs, reset delay, command timeout, camera rate)",
        ),
    ]


def sim_robot_node() -> Node:
    """The simulated robot: the env behind the mapping's topics (wall clock, no /clock)."""
    return il_node(
        "sim_robot",
        "sim_params_file",
        {
            "mapping_file": value("mapping_file"),
            "env_id": value("env_id"),
            "seed": value("seed", int),
            "max_episodes": value("episodes", int),
        },
    )
