"""Static checks of launch/*.launch.py and the nodes' config/*.yaml against the real nodes.

``launch`` and ``launch_ros`` are not on PyPI, so the launch files are never imported: each
is parsed with :mod:`ast` and a small evaluator resolves what matters statically (string
constants, names assigned once, ``LaunchConfiguration`` through its argument's choices or
default, ``PathJoinSubstitution`` of ``FindPackageShare``, ``ParameterValue``). What the
nodes declare comes from the nodes themselves: every node class is instantiated with rclpy
in a child process (:func:`declared_parameters`), and its parameters (names and ROS types)
are read from ``node._parameters``.

Checked for every launch file:

- it defines ``generate_launch_description``;
- every ``DeclareLaunchArgument`` has a non-empty constant ``description``, a unique name,
  a default inside its ``choices``, and is used; every ``LaunchConfiguration("x")`` names a
  declared argument;
- every ``FindPackageShare("il_ros")`` path exists in the package (config files must be
  ``config/*.yaml``, the files setup.py installs);
- every ``Node(...)`` / ``LifecycleNode(...)``: ``package="il_ros"``, an ``executable`` that
  is a console script of setup.py, a constant ``name`` (and a ``namespace`` for
  ``LifecycleNode``, which Humble requires); in ``parameters=[...]`` each parameter file
  resolves to files under config/ that exist and have a ``<name>: ros__parameters:`` section
  for this node whose keys are declared parameters of the right type; each key of a dict
  literal is a declared parameter whose value has the right type (``ParameterValue``'s
  ``value_type``, or what launch_ros makes of the argument's default: it YAML-parses
  substitution results).

Checked for every ``config/*.yaml`` holding ``ros__parameters``: the top-level key is a node
name, its keys are exactly the parameters that node declares (besides rclpy's own) and each
value has the declared type (ROS refuses ``1`` for a float parameter).

The checker is a set of pure functions returning problems; the self-checks at the end feed
it synthetic launch sources and parameter files with one mistake each and require that the
mistake is reported, so a checker that silently accepts everything fails.
"""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR = ROOT / "launch"
CONFIG_DIR = ROOT / "config"
PACKAGE = "il_ros"
#: Stands for ``share/il_ros`` in evaluated paths (setup.py installs config/ and launch/ there).
SHARE = "<share:il_ros>"

#: Console script -> (module, node class, parameter overrides it needs to construct).
#: ``{tmp}`` is replaced by a temporary directory (the recorder creates its dataset there).
NODE_CLASSES: dict[str, tuple[str, str, dict[str, str]]] = {
    "sim_robot": ("il_ros.sim_robot_node", "SimRobotNode", {}),
    "scripted_teleop": ("il_ros.scripted_teleop_node", "ScriptedTeleopNode", {}),
    "teleop": ("il_ros.teleop_node", "TeleopNode", {}),
    "recorder": (
        "il_ros.recorder_node",
        "RecorderNode",
        {"mapping_file": "config/point_reach_mapping.yaml", "output_dir": "{tmp}/dataset"},
    ),
    "inference": ("il_ros.inference_node", "InferenceNode", {}),
    "dagger": ("il_ros.dagger_node", "DaggerNode", {}),
}

#: Nodes each launch file must start (sim_* variants add the simulated robot and replace the
#: human teleop by the scripted one).
EXPECTED_EXECUTABLES = {
    "record.launch.py": {"teleop", "recorder"},
    "policy.launch.py": {"inference"},
    "dagger.launch.py": {"inference", "teleop", "dagger"},
    "sim_record.launch.py": {"sim_robot", "scripted_teleop", "recorder"},
    "sim_policy.launch.py": {"sim_robot", "inference"},
    "sim_dagger.launch.py": {"sim_robot", "inference", "scripted_teleop", "dagger"},
}
LIFECYCLE_EXECUTABLES = {"inference", "dagger"}

NODE_ACTIONS = ("Node", "LifecycleNode")
#: ROS parameter type of a ParameterValue(value_type=...) / of a Python value.
VALUE_TYPES = {"str": "STRING", "int": "INTEGER", "float": "DOUBLE", "bool": "BOOL"}

# The child process that instantiates every node class and prints what each declares.
_DECLARED_SCRIPT = """
import importlib, json, sys, tempfile
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

classes = json.loads(sys.argv[1])
rclpy.init()
out = {}
try:
    base = Node("il_ros_launch_check_base")
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


# -- setup.py ------------------------------------------------------------------------------


def console_scripts(setup_py: Path = ROOT / "setup.py") -> set[str]:
    """Names of the console scripts in setup.py's ``entry_points`` (read with ast)."""
    tree = ast.parse(setup_py.read_text(encoding="utf-8"), str(setup_py))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entry_points = ast.literal_eval(node.value)
            return {s.split("=")[0].strip() for s in entry_points.get("console_scripts", [])}
    raise AssertionError(f"{setup_py}: no entry_points keyword")


# -- parsing a launch file -----------------------------------------------------------------


def call_name(node: ast.AST) -> str | None:
    """``"Node"`` for ``Node(...)`` and ``launch_ros.actions.Node(...)``; None if no call."""
    if not isinstance(node, ast.Call):
        return None
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def const_str(node: ast.AST | None) -> str | None:
    """The value of a string constant, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


@dataclass
class Argument:
    """A ``DeclareLaunchArgument`` of a launch file."""

    name: str
    line: int
    default: ast.expr | None
    description: str | None
    choices: list[str] | None


@dataclass
class NodeAction:
    """A ``Node(...)`` or ``LifecycleNode(...)`` of a launch file."""

    kind: str
    line: int
    kwargs: dict[str, ast.expr]


@dataclass
class LaunchSource:
    """What the checks need from one launch file's AST."""

    filename: str
    tree: ast.Module
    assignments: dict[str, ast.expr | None] = field(default_factory=dict)
    arguments: dict[str, Argument] = field(default_factory=dict)
    nodes: list[NodeAction] = field(default_factory=list)
    configurations: list[tuple[str | None, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def where(self, line: int) -> str:
        """``file:line`` for messages."""
        return f"{self.filename}:{line}"


def parse_launch_source(source: str, filename: str) -> LaunchSource:
    """Collect arguments, node actions, launch configurations and simple assignments."""
    src = LaunchSource(filename, ast.parse(source, filename))
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            target = value = None
        if isinstance(target, ast.Name):
            # A name assigned twice is ambiguous for a static reader: resolve it to nothing.
            src.assignments[target.id] = None if target.id in src.assignments else value
        name = call_name(node)
        if name == "DeclareLaunchArgument":
            _add_argument(src, node)
        elif name in NODE_ACTIONS:
            kwargs = {k.arg: k.value for k in node.keywords if k.arg is not None}
            src.nodes.append(NodeAction(name, node.lineno, kwargs))
        elif name == "LaunchConfiguration":
            arg = node.args[0] if node.args else _keyword(node, "variable_name")
            src.configurations.append((const_str(arg), node.lineno))
    return src


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _add_argument(src: LaunchSource, call: ast.Call) -> None:
    name = const_str(call.args[0] if call.args else _keyword(call, "name"))
    if name is None:
        src.problems.append(f"{src.where(call.lineno)}: launch argument name is not a string")
        return
    if name in src.arguments:
        src.problems.append(f"{src.where(call.lineno)}: launch argument {name!r} declared twice")
    default = call.args[1] if len(call.args) > 1 else _keyword(call, "default_value")
    choices_node = _keyword(call, "choices")
    choices = None
    if choices_node is not None:
        try:
            choices = [str(c) for c in ast.literal_eval(choices_node)]
        except ValueError:
            src.problems.append(
                f"{src.where(call.lineno)}: choices of {name!r} are not a literal list"
            )
    src.arguments[name] = Argument(
        name, call.lineno, default, const_str(_keyword(call, "description")), choices
    )


# -- evaluating expressions statically ---------------------------------------------------


def possible_strings(src: LaunchSource, expr: ast.AST | None, depth: int = 0) -> set[str] | None:
    """Every string ``expr`` can evaluate to at launch, or None when that is unknown.

    A ``LaunchConfiguration`` takes its argument's ``choices`` (all of them) or its default;
    ``FindPackageShare("pkg")`` is ``<share:pkg>``; lists concatenate like launch's
    substitution lists; ``PathJoinSubstitution`` joins with ``/``.
    """
    if expr is None or depth > 20:
        return None
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if isinstance(expr, ast.Name):
        return possible_strings(src, src.assignments.get(expr.id), depth + 1)
    if isinstance(expr, ast.List | ast.Tuple):
        parts = [possible_strings(src, e, depth + 1) for e in expr.elts]
        if any(p is None for p in parts):
            return None
        return {"".join(combo) for combo in itertools.product(*parts)}
    name = call_name(expr)
    if name == "LaunchConfiguration":
        arg_name = const_str(expr.args[0] if expr.args else _keyword(expr, "variable_name"))
        arg = src.arguments.get(arg_name) if arg_name else None
        if arg is None:
            return None
        if arg.choices:
            return set(arg.choices)
        return possible_strings(src, arg.default, depth + 1)
    if name == "FindPackageShare":
        pkg = const_str(expr.args[0]) if expr.args else None
        return {f"<share:{pkg}>"} if pkg else None
    if name == "PathJoinSubstitution" and expr.args:
        if not isinstance(expr.args[0], ast.List | ast.Tuple):
            return None
        parts = [possible_strings(src, e, depth + 1) for e in expr.args[0].elts]
        if any(p is None for p in parts):
            return None
        return {"/".join(combo) for combo in itertools.product(*parts)}
    if name == "ParameterValue" and expr.args:
        return possible_strings(src, expr.args[0], depth + 1)
    return None


def yaml_value_type(value: Any) -> str | None:
    """ROS parameter type of a YAML / Python value (None for an empty list or None)."""
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


def _launch_ros_type(text: str) -> str:
    """The type launch_ros gives a substitution's result in a parameter dict (YAML-parsed)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return "STRING"
    return yaml_value_type(value) or "STRING"


def _coerces(text: str, value_type: str) -> bool:
    try:
        if value_type == "int":
            int(text)
        elif value_type == "float":
            float(text)
        elif value_type == "bool":
            return text.lower() in ("true", "false")
    except ValueError:
        return False
    return True


def value_types(src: LaunchSource, expr: ast.AST, where: str) -> tuple[set[str] | None, list]:
    """ROS types a parameter-dict value can take at launch (None: unknown), and problems."""
    if isinstance(expr, ast.Name) and src.assignments.get(expr.id) is not None:
        return value_types(src, src.assignments[expr.id], where)
    if isinstance(expr, ast.Constant):
        kind = yaml_value_type(expr.value)
        return ({kind} if kind else None), []
    if isinstance(expr, ast.List | ast.Tuple):
        try:
            kind = yaml_value_type(list(ast.literal_eval(expr)))
        except ValueError:
            return None, []
        return ({kind} if kind else None), []
    if call_name(expr) == "ParameterValue":
        value_type = _keyword(expr, "value_type")
        type_name = value_type.id if isinstance(value_type, ast.Name) else None
        if type_name is None:
            return value_types(src, expr.args[0], where) if expr.args else (None, [])
        if type_name not in VALUE_TYPES:
            return None, [f"{where}: ParameterValue value_type {type_name} is not checked"]
        texts = possible_strings(src, expr.args[0]) if expr.args else None
        bad = sorted(t for t in texts or () if not _coerces(t, type_name))
        problems = [f"{where}: default {t!r} is not a valid {type_name}" for t in bad]
        return {VALUE_TYPES[type_name]}, problems
    texts = possible_strings(src, expr)
    if texts is None:
        return None, []
    return {_launch_ros_type(t) for t in texts}, []


# -- the checks ------------------------------------------------------------------------------


def check_parameter(
    name: str, kind: set[str] | str | None, node: dict[str, Any], where: str
) -> list[str]:
    """Problems of setting parameter ``name`` (of type(s) ``kind``) on a declared node."""
    declared = node["params"]
    if name not in declared:
        return [
            f"{where}: parameter {name!r} is not declared by node {node['name']!r} "
            f"(declared: {sorted(declared)})"
        ]
    kinds = {kind} if isinstance(kind, str) else kind
    if kinds and any(k != declared[name] for k in kinds):
        return [
            f"{where}: parameter {name!r} of node {node['name']!r} is declared "
            f"{declared[name]} but set as {sorted(kinds)}"
        ]
    return []


def check_params_yaml(
    path: Path, node_name: str, node: dict[str, Any], where: str, *, complete: bool = False
) -> list[str]:
    """Problems of loading ``path`` as the parameter file of node ``node_name``.

    Args:
        path: The YAML parameter file.
        node_name: The name the node runs under (its section must exist, else the file would
            be ignored silently).
        node: ``{"name": default name, "params": {name: ROS type}}`` of the node class.
        where: Prefix of every message.
        complete: Also require every declared parameter (the node's own) to be listed.

    Returns:
        One message per problem.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        return [f"{where}: cannot read {path}: {e}"]
    if not isinstance(data, dict):
        return [f"{where}: {path.name} is not a mapping of node names"]
    sections = [k for k in data if k in (node_name, f"/{node_name}", "/**", "**")]
    if not sections:
        return [
            f"{where}: {path.name} has no section for node {node_name!r} (top-level keys "
            f"{sorted(data)}); its parameters would be ignored"
        ]
    problems = []
    for section in sections:
        params = (data[section] or {}).get("ros__parameters")
        if not isinstance(params, dict):
            problems.append(f"{where}: {path.name}: {section}: no ros__parameters mapping")
            continue
        for key, value in params.items():
            problems += check_parameter(
                key, yaml_value_type(value), node, f"{where}: {path.name}: {section}"
            )
        if complete:
            missing = sorted(set(node["own"]) - set(params))
            if missing:
                problems.append(
                    f"{where}: {path.name}: {section} lacks declared parameters {missing} "
                    "(every parameter lives in config/*.yaml)"
                )
    return problems


def check_launch_source(
    source: str,
    filename: str,
    *,
    scripts: set[str],
    declared: dict[str, dict[str, Any]],
    share_dir: Path,
) -> list[str]:
    """Every problem of one launch file's source (empty when it is right).

    Args:
        source: The launch file's text.
        filename: For messages.
        scripts: Console scripts of the package.
        declared: Console script -> ``{"name": default node name, "params": {name: type}}``.
        share_dir: Directory standing for ``share/il_ros`` (the repository root).

    Returns:
        One message per problem.
    """
    try:
        src = parse_launch_source(source, filename)
    except SyntaxError as e:
        return [f"{filename}: does not parse: {e}"]
    problems = list(src.problems)
    if not any(
        isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
        for n in src.tree.body
    ):
        problems.append(f"{filename}: no generate_launch_description()")

    used = set()
    for name, line in src.configurations:
        if name is None:
            problems.append(f"{src.where(line)}: LaunchConfiguration name is not a string")
        elif name not in src.arguments:
            problems.append(f"{src.where(line)}: LaunchConfiguration({name!r}) is not declared")
        used.add(name)
    for arg in src.arguments.values():
        where = src.where(arg.line)
        if not (arg.description or "").strip():
            problems.append(f"{where}: launch argument {arg.name!r} has no description")
        if arg.name not in used:
            problems.append(f"{where}: launch argument {arg.name!r} is never used")
        default = const_str(arg.default)
        if arg.choices is not None and default is not None and default not in arg.choices:
            problems.append(f"{where}: default {default!r} of {arg.name!r} not in choices")

        if arg.default is not None:
            problems += _check_share_paths(src, arg.default, where, share_dir)

    for node in ast.walk(src.tree):
        if call_name(node) == "PathJoinSubstitution" and node.args:
            parts = node.args[0].elts if isinstance(node.args[0], ast.List | ast.Tuple) else []
            if any(isinstance(p, ast.List | ast.Tuple) for p in parts):
                problems.append(
                    f"{src.where(node.lineno)}: a list as one PathJoinSubstitution component "
                    "needs launch from 2025 (ros2/launch#838), not every Humble: concatenate "
                    "outside it, [PathJoinSubstitution([...]), LaunchConfiguration(...), '.yaml']"
                )

    for action in src.nodes:
        problems += _check_node_action(src, action, scripts, declared, share_dir)
    return problems


def _check_share_paths(src: LaunchSource, expr: ast.expr, where: str, share_dir: Path) -> list:
    """Files of this package that ``expr`` can name must exist (and be installed)."""
    paths = possible_strings(src, expr)
    if paths is None:
        if any(call_name(n) == "FindPackageShare" for n in ast.walk(expr)):
            return [f"{where}: path cannot be resolved statically"]
        return []
    problems = []
    for path in sorted(paths):
        if not path.startswith(SHARE + "/"):
            continue
        rel = path[len(SHARE) + 1 :]
        if rel.startswith("config/") and not rel.endswith(".yaml"):
            problems.append(f"{where}: {rel} is not installed (setup.py installs config/*.yaml)")
        elif not (share_dir / rel).is_file():
            problems.append(f"{where}: {rel} does not exist in the package")
    return problems


def _check_node_action(
    src: LaunchSource,
    action: NodeAction,
    scripts: set[str],
    declared: dict[str, dict[str, Any]],
    share_dir: Path,
) -> list[str]:
    where = src.where(action.line)
    kw = action.kwargs
    problems = []
    package = const_str(kw.get("package"))
    if package != PACKAGE:
        problems.append(f"{where}: {action.kind} package is {package!r}, not {PACKAGE!r}")
    executable = const_str(kw.get("executable"))
    if executable not in scripts:
        problems.append(
            f"{where}: executable {executable!r} is not a console script of setup.py "
            f"({sorted(scripts)})"
        )
        return problems
    if executable not in declared:
        return [*problems, f"{where}: no node class known for executable {executable!r}"]
    node = declared[executable]
    name = const_str(kw.get("name")) if "name" in kw else node["name"]
    if name is None:
        problems.append(f"{where}: node name is not a string constant")
        return problems
    if action.kind == "LifecycleNode" and "namespace" not in kw:
        problems.append(f"{where}: LifecycleNode without namespace= (required on Humble)")
    params = kw.get("parameters")
    if isinstance(params, ast.Name):
        params = src.assignments.get(params.id)
    if params is None:
        return problems
    if not isinstance(params, ast.List | ast.Tuple):
        return [*problems, f"{where}: parameters= is not a list literal"]
    for element in params.elts:
        if isinstance(element, ast.Name) and isinstance(src.assignments.get(element.id), ast.Dict):
            element = src.assignments[element.id]
        if isinstance(element, ast.Dict):
            for key, value in zip(element.keys, element.values, strict=True):
                key_name = const_str(key)
                if key_name is None:
                    problems.append(f"{where}: parameter name is not a string constant")
                    continue
                kinds, value_problems = value_types(src, value, f"{where}: {key_name}")
                problems += value_problems
                problems += _check_share_paths(src, value, f"{where}: {key_name}", share_dir)
                problems += check_parameter(key_name, kinds, node, f"{where}: {name}")
            continue
        paths = possible_strings(src, element)
        if paths is None:
            problems.append(f"{where}: parameter file cannot be resolved statically")
            continue
        for path in sorted(paths):
            if not path.startswith(f"{SHARE}/config/"):
                problems.append(f"{where}: parameter file {path!r} is not under config/")
                continue
            rel = path[len(SHARE) + 1 :]
            if not (share_dir / rel).is_file():
                problems.append(f"{where}: parameter file {rel} does not exist")
                continue
            problems += check_params_yaml(share_dir / rel, name, node, f"{where}: {name}")
    return problems


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def declared_parameters() -> dict[str, dict[str, Any]]:
    """Console script -> default node name, declared parameters (name -> ROS type) and own.

    Every node class is constructed in a child process (rclpy's default context, no
    spinning), so nothing of it stays in the pytest process. ``own`` leaves out the
    parameters rclpy declares on every node (``use_sim_time``, ...).
    """
    proc = subprocess.run(
        [sys.executable, "-c", _DECLARED_SCRIPT, json.dumps(NODE_CLASSES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("DECLARED ")]
    assert proc.returncode == 0 and lines, (
        f"constructing the nodes failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    out = json.loads(lines[-1][len("DECLARED ") :])
    base = set(out.pop("__base__"))
    for node in out.values():
        node["own"] = sorted(set(node["params"]) - base)
    return out


def launch_files() -> list[Path]:
    return sorted(LAUNCH_DIR.glob("*.launch.py"))


def node_param_files() -> list[Path]:
    """config/*.yaml files that hold node parameters (``<node>: ros__parameters:``)."""
    found = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and any(
            isinstance(v, dict) and "ros__parameters" in v for v in data.values()
        ):
            found.append(path)
    return found


def _parsed(name: str) -> LaunchSource:
    path = LAUNCH_DIR / name
    return parse_launch_source(path.read_text(encoding="utf-8"), name)


# -- the real launch files and configs ------------------------------------------------------


def test_every_expected_launch_file_exists():
    assert {p.name for p in launch_files()} >= set(EXPECTED_EXECUTABLES)


def test_node_console_scripts_are_the_known_node_classes():
    assert console_scripts() - {"il-core"} == set(NODE_CLASSES)


def test_node_parameter_files_are_found():
    names = {p.name for p in node_param_files()}
    assert {"sim_robot.yaml", "recorder.yaml", "inference.yaml", "dagger.yaml"} <= names


@pytest.mark.ros
@pytest.mark.parametrize("path", launch_files(), ids=lambda p: p.name)
def test_launch_file_matches_the_nodes(path, declared_parameters):
    problems = check_launch_source(
        path.read_text(encoding="utf-8"),
        path.name,
        scripts=console_scripts(),
        declared=declared_parameters,
        share_dir=ROOT,
    )
    assert not problems, "\n".join(problems)


@pytest.mark.ros
@pytest.mark.parametrize("path", node_param_files(), ids=lambda p: p.name)
def test_config_params_match_the_declaring_node(path, declared_parameters):
    by_name = {n["name"]: n for n in declared_parameters.values()}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = []
    for section in data:
        node_name = str(section).lstrip("/")
        if node_name not in by_name:
            problems.append(f"{path.name}: {section!r} is not a node name ({sorted(by_name)})")
            continue
        problems += check_params_yaml(
            path, node_name, by_name[node_name], path.name, complete=True
        )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(EXPECTED_EXECUTABLES))
def test_launch_file_starts_the_expected_nodes(name):
    src = _parsed(name)
    kinds = {const_str(n.kwargs.get("executable")): n.kind for n in src.nodes}
    assert set(kinds) == EXPECTED_EXECUTABLES[name]
    for executable, kind in kinds.items():
        expected = "LifecycleNode" if executable in LIFECYCLE_EXECUTABLES else "Node"
        assert kind == expected, f"{name}: {executable} started as {kind}"


def _param_strings(src: LaunchSource, executable: str, param: str) -> set[str] | None:
    node = next(n for n in src.nodes if const_str(n.kwargs.get("executable")) == executable)
    for element in node.kwargs["parameters"].elts:
        if isinstance(element, ast.Dict):
            for key, value in zip(element.keys, element.values, strict=True):
                if const_str(key) == param:
                    return possible_strings(src, value)
    return None


@pytest.mark.parametrize(
    ("name", "teleop"),
    [("dagger.launch.py", "teleop"), ("sim_dagger.launch.py", "scripted_teleop")],
)
def test_dagger_wiring_policy_and_expert_topics(name, teleop):
    src = _parsed(name)
    policy = _param_strings(src, "inference", "command_topic")
    expert = _param_strings(src, teleop, "command_topic")
    assert policy == {"/policy/cmd"} == _param_strings(src, "dagger", "policy_topic")
    assert expert == {"/expert/cmd"} == _param_strings(src, "dagger", "expert_topic")
    for executable in LIFECYCLE_EXECUTABLES:
        assert _param_strings(src, executable, "auto_activate") == {"true", "false"}


@pytest.mark.parametrize("name", ["record.launch.py", "dagger.launch.py"])
def test_teleop_argument_selects_each_teleop_config(name):
    src = _parsed(name)
    paths = possible_strings(src, src.arguments["teleop_params_file"].default)
    assert paths == {f"{SHARE}/config/teleop_joy.yaml", f"{SHARE}/config/teleop_twist.yaml"}


# -- self-checks: the checker must catch each kind of mistake -------------------------------

FAKE_DECLARED = {
    "recorder": {
        "name": "recorder",
        "params": {
            "use_sim_time": "BOOL",
            "mapping_file": "STRING",
            "output_dir": "STRING",
            "flush_every": "INTEGER",
            "max_episode_s": "DOUBLE",
        },
        "own": ["mapping_file", "output_dir", "flush_every", "max_episode_s"],
    },
    "inference": {
        "name": "inference",
        "params": {"use_sim_time": "BOOL", "checkpoint": "STRING", "auto_activate": "BOOL"},
        "own": ["checkpoint", "auto_activate"],
    },
}
FAKE_SCRIPTS = {"il-core", "recorder", "inference"}
GOOD_YAML = """\
recorder:
  ros__parameters:
    mapping_file: config/m.yaml
    output_dir: data
    flush_every: 30
    max_episode_s: 0.0
"""
GOOD_LAUNCH = """\
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    out = LaunchConfiguration("output_dir")
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("il_ros"), "config", "recorder.yaml"]
            ),
            description="recorder parameters",
        ),
        DeclareLaunchArgument("output_dir", default_value="data", description="dataset"),
        DeclareLaunchArgument(
            "flush", default_value="30", description="flush interval"
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", choices=["true", "false"],
            description="sim clock",
        ),
        DeclareLaunchArgument("checkpoint", description="policy.pt"),
        Node(
            package="il_ros",
            executable="recorder",
            name="recorder",
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "output_dir": ParameterValue(out, value_type=str),
                    "flush_every": ParameterValue(LaunchConfiguration("flush"), value_type=int),
                    "use_sim_time": LaunchConfiguration("use_sim_time"),
                    "max_episode_s": 5.0,
                },
            ],
        ),
        LifecycleNode(
            package="il_ros",
            executable="inference",
            name="inference",
            namespace="",
            parameters=[{"checkpoint": LaunchConfiguration("checkpoint"), "auto_activate": True}],
        ),
    ])
"""


@pytest.fixture
def fake_share(tmp_path) -> Path:
    """A package share directory with config/recorder.yaml (GOOD_YAML)."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "recorder.yaml").write_text(GOOD_YAML)
    return tmp_path


def _check(source: str, share: Path) -> list[str]:
    return check_launch_source(
        source,
        "synthetic.launch.py",
        scripts=FAKE_SCRIPTS,
        declared=FAKE_DECLARED,
        share_dir=share,
    )


def test_self_check_accepts_a_correct_launch_file(fake_share):
    assert _check(GOOD_LAUNCH, fake_share) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('executable="recorder"', 'executable="recordr"', "'recordr' is not a console script"),
        (
            'package="il_ros",\n            executable="inference"',
            'package="other",\n            executable="inference"',
            "package is 'other'",
        ),
        ('"recorder.yaml"', '"recorder_missing.yaml"', "recorder_missing.yaml does not exist"),
        ('"output_dir": Param', '"output_dirr": Param', "'output_dirr' is not declared"),
        ('"max_episode_s": 5.0', '"max_episode_s": 5', "declared DOUBLE but set as ['INTEGER']"),
        ('description="dataset"', 'description=""', "'output_dir' has no description"),
        ('description="dataset"', "", "'output_dir' has no description"),
        ('LaunchConfiguration("flush")', 'LaunchConfiguration("flsh")', "'flsh') is not declared"),
        ('default_value="30"', 'default_value="3o"', "'3o' is not a valid int"),
        ('name="recorder",', 'name="recorder2",', "no section for node 'recorder2'"),
        ('namespace="",', "", "LifecycleNode without namespace="),
        ('"use_sim_time": LaunchConfiguration("use_sim_time"),', "", "'use_sim_time' is never"),
        ("def generate_launch_description", "def make", "no generate_launch_description"),
    ],
)
def test_self_check_reports_each_mistake(fake_share, old, new, expected):
    source = GOOD_LAUNCH.replace(old, new)
    assert source != GOOD_LAUNCH, f"synthetic edit {old!r} did not apply"
    problems = _check(source, fake_share)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("flush_every: 30", "flush_evry: 30", "'flush_evry' is not declared"),
        ("max_episode_s: 0.0", "max_episode_s: 0", "declared DOUBLE but set as ['INTEGER']"),
        ("recorder:", "recordr:", "no section for node 'recorder'"),
    ],
)
def test_self_check_reports_parameter_file_mistakes(fake_share, old, new, expected):
    path = fake_share / "config" / "recorder.yaml"
    path.write_text(GOOD_YAML.replace(old, new))
    problems = _check(GOOD_LAUNCH, fake_share)
    assert any(expected in p for p in problems), problems


def test_self_check_completeness_of_a_node_config(fake_share):
    path = fake_share / "config" / "recorder.yaml"
    node = FAKE_DECLARED["recorder"]
    assert check_params_yaml(path, "recorder", node, "x", complete=True) == []
    path.write_text(GOOD_YAML.replace("    flush_every: 30\n", ""))
    problems = check_params_yaml(path, "recorder", node, "x", complete=True)
    assert any("lacks declared parameters ['flush_every']" in p for p in problems), problems


def test_self_check_follows_choices_into_every_config_file(fake_share):
    source = GOOD_LAUNCH.replace(
        'default_value=PathJoinSubstitution(\n                [FindPackageShare("il_ros"), '
        '"config", "recorder.yaml"]\n            ),',
        'default_value=[PathJoinSubstitution([FindPackageShare("il_ros"), "config", '
        '"recorder"]), LaunchConfiguration("variant"), ".yaml"],',
    ).replace(
        'DeclareLaunchArgument("checkpoint"',
        'DeclareLaunchArgument("variant", default_value="", choices=["", "_b"], '
        'description="v"),\n        DeclareLaunchArgument("checkpoint"',
    )
    assert source.count("variant") == 2, "synthetic edit did not apply"
    problems = _check(source, fake_share)
    assert len(problems) == 2, problems
    assert "config/recorder_b.yaml does not exist in the package" in problems[0]
    assert "parameter file config/recorder_b.yaml does not exist" in problems[1]


def test_self_check_rejects_lists_inside_path_join(fake_share):
    source = GOOD_LAUNCH.replace('"recorder.yaml"', '["recorder", ".yaml"]')
    problems = _check(source, fake_share)
    assert any("needs launch from 2025" in p for p in problems), problems
