"""Every node's ``config/*.yaml`` lists exactly the parameters the node declares, typed right.

ROS ignores a key in a parameter file that no node declares (a typo, a renamed parameter),
and refuses ``1`` for a float parameter only when the node starts: both are caught here,
against the nodes themselves. Each node class is constructed in a child process (rclpy's
default context, no spinning) and its declared parameters, names and ROS types, are read
from ``node._parameters``. The launch files themselves are run for real, with ``ros2
launch``, in ``tests/test_launch.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MAPPING = "config/point_reach_mapping.yaml"

#: Console script -> (module, node class, parameter overrides it needs to construct).
#: ``{tmp}`` is replaced by a temporary directory (the recorder creates its dataset there).
NODE_CLASSES: dict[str, tuple[str, str, dict[str, str]]] = {
    "sim_robot": ("il_ros.sim_robot_node", "SimRobotNode", {}),
    "scripted_teleop": ("il_ros.scripted_teleop_node", "ScriptedTeleopNode", {}),
    "teleop": ("il_ros.teleop_node", "TeleopNode", {"mapping_file": MAPPING}),
    "recorder": (
        "il_ros.recorder_node",
        "RecorderNode",
        {"mapping_file": MAPPING, "output_dir": "{tmp}/dataset"},
    ),
    "inference": ("il_ros.inference_node", "InferenceNode", {}),
    "dagger": ("il_ros.dagger_node", "DaggerNode", {}),
}

_DECLARED_SCRIPT = """
import importlib, json, sys, tempfile
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

classes = json.loads(sys.argv[1])
rclpy.init()
out = {}
try:
    base = Node("il_ros_param_check_base")
    out["__base__"] = sorted(base._parameters)
    base.destroy_node()
    with tempfile.TemporaryDirectory() as tmp:
        for exe, (module, cls, overrides) in classes.items():
            node_class = getattr(importlib.import_module(module), cls)
            params = [Parameter(k, value=v.replace("{tmp}", tmp)) for k, v in overrides.items()]
            node = node_class(parameter_overrides=params) if params else node_class()
            out[exe] = {
                "name": node.get_name(),
                "params": {n: p.type_.name for n, p in node._parameters.items()},
            }
            node.destroy_node()
finally:
    rclpy.try_shutdown()
print("DECLARED " + json.dumps(out))
"""


def yaml_value_type(value: Any) -> str | None:
    """ROS parameter type of a YAML value (None for an empty list or None)."""
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "DOUBLE"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list) and value:
        kinds = {yaml_value_type(v) for v in value}
        if len(kinds) == 1 and next(iter(kinds)) in ("BOOL", "INTEGER", "DOUBLE", "STRING"):
            return f"{next(iter(kinds))}_ARRAY"
        return "MIXED_ARRAY"
    return None


def param_file_problems(data: Any, declared: dict[str, dict[str, Any]], where: str) -> list[str]:
    """Problems of a parameter file's content against the nodes' declarations.

    Args:
        data: The parsed YAML (``{node name: {"ros__parameters": {...}}}``).
        declared: Console script -> ``{"name", "params": {name: type}, "own": [...]}``.
        where: Prefix of every message (the file name).
    """
    by_name = {n["name"]: n for n in declared.values()}
    problems = []
    for section, body in data.items():
        node = by_name.get(str(section).lstrip("/"))
        if node is None:
            problems.append(f"{where}: {section!r} is not a node name ({sorted(by_name)})")
            continue
        params = (body or {}).get("ros__parameters")
        if not isinstance(params, dict):
            problems.append(f"{where}: {section}: no ros__parameters mapping")
            continue
        for key, value in params.items():
            kind = node["params"].get(key)
            if kind is None:
                problems.append(f"{where}: {section}: {key!r} is not declared by the node")
            elif yaml_value_type(value) not in (kind, None):
                problems.append(
                    f"{where}: {section}: {key!r} is declared {kind} but set as "
                    f"{yaml_value_type(value)} ({value!r})"
                )
        missing = sorted(set(node["own"]) - set(params))
        if missing:
            problems.append(f"{where}: {section} lacks declared parameters {missing}")
    return problems


@pytest.fixture(scope="module")
def declared() -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-c", _DECLARED_SCRIPT, json.dumps(NODE_CLASSES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("DECLARED ")]
    assert proc.returncode == 0 and lines, f"{proc.stdout}\n{proc.stderr}"
    out = json.loads(lines[-1][len("DECLARED ") :])
    base = set(out.pop("__base__"))
    for node in out.values():
        node["own"] = sorted(set(node["params"]) - base)
    return out


def node_param_files() -> list[Path]:
    """config/*.yaml files that hold node parameters (``<node>: ros__parameters:``)."""
    found = []
    for path in sorted((ROOT / "config").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and any(
            isinstance(v, dict) and "ros__parameters" in v for v in data.values()
        ):
            found.append(path)
    return found


def test_every_node_has_its_parameter_file():
    names = {p.name for p in node_param_files()}
    assert {f"{exe}.yaml" for exe in NODE_CLASSES if exe != "teleop"} <= names
    assert {"teleop_joy.yaml", "teleop_twist.yaml"} <= names


@pytest.mark.ros
@pytest.mark.parametrize("path", node_param_files(), ids=lambda p: p.name)
def test_config_lists_exactly_the_declared_parameters(path, declared):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = param_file_problems(data, declared, path.name)
    assert not problems, "\n".join(problems)


@pytest.mark.ros
def test_the_check_reports_each_kind_of_mistake(declared):
    good = yaml.safe_load((ROOT / "config" / "recorder.yaml").read_text())
    assert param_file_problems(good, declared, "x") == []
    typo = {"recorder": {"ros__parameters": {**good["recorder"]["ros__parameters"], "ouput": 1}}}
    assert "'ouput' is not declared" in param_file_problems(typo, declared, "x")[0]
    params = dict(good["recorder"]["ros__parameters"])
    params["flush_every"] = 3.0
    assert (
        "declared INTEGER"
        in param_file_problems({"recorder": {"ros__parameters": params}}, declared, "x")[0]
    )
    del params["flush_every"]
    assert (
        "lacks declared parameters ['flush_every']"
        in param_file_problems({"recorder": {"ros__parameters": params}}, declared, "x")[0]
    )
    assert "not a node name" in param_file_problems({"recordr": {}}, declared, "x")[0]
