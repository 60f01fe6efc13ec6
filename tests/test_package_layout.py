"""Checks on the package layout: il_core stays ROS-free, and the manifests agree.

- No module under il_core/ imports ROS (read with ``ast``, so nothing is executed; importing
  every il_core module in a fresh interpreter also must not load ROS transitively).
- package.xml is a valid format-3 manifest with the required dependencies, and its name and
  version agree with setup.py and ``il_core.__version__``.
- Every Python directory that setup.py ships is a package (has __init__.py), so neither
  colcon nor pip silently leaves it out.
- Every config/*.yaml parses.
"""

import ast
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_PACKAGES = ("il_core", "sim", "il_ros")

# Top-level modules that mean "ROS": exact names, prefixes, and suffixes (message packages).
ROS_MODULES = {
    "rclpy",
    "rcl",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_srvs",
    "launch",
    "launch_ros",
    "launch_testing",
    "launch_testing_ros",
    "ament_index_python",
    "message_filters",
    "cv_bridge",
    "tf2_ros",
    "rpyutils",
}
ROS_PREFIXES = ("rosidl", "rosbag2", "rmw", "rcl_", "tf2_", "ros2")
ROS_SUFFIXES = ("_msgs", "_srvs", "_actions")

REQUIRED_EXEC_DEPENDS = {"rclpy", "sensor_msgs", "geometry_msgs", "std_msgs", "std_srvs"}


def is_ros_module(name: str) -> bool:
    """True if the dotted module name ``name`` belongs to ROS 2."""
    top = name.split(".")[0]
    return top in ROS_MODULES or top.startswith(ROS_PREFIXES) or top.endswith(ROS_SUFFIXES)


def is_sim_module(name: str) -> bool:
    """True if ``name`` is this repository's ``sim`` package or one of its modules."""
    return name.split(".")[0] == "sim"


def find_ros_imports(
    source: str, filename: str = "<string>", banned: Callable[[str], bool] = is_ros_module
) -> list[str]:
    """Return ``"file:line: module"`` for every ROS (or other ``banned``) import in a source.

    Covers ``import x``, ``from x import y`` (absolute only: a relative import stays inside
    the package), and ``importlib.import_module("x")`` / ``__import__("x")`` with a literal.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            func_name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            arg = node.args[0]
            if (
                func_name in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                names = [arg.value]
        found += [f"{filename}:{node.lineno}: {name}" for name in names if banned(name)]
    return found


def il_core_sources() -> list[Path]:
    return sorted((ROOT / "il_core").rglob("*.py"))


# --- il_core never imports ROS ---------------------------------------------------------------


def test_ros_import_detector_flags_ros_imports():
    # Negative self-check: each of these must be caught, else the real check proves nothing.
    bad_sources = [
        "import rclpy",
        "import rclpy.node",
        "from rclpy.node import Node",
        "import numpy as np, sensor_msgs.msg as sm",
        "from std_msgs.msg import Float32MultiArray",
        "from geometry_msgs.msg import Twist",
        "from std_srvs.srv import Trigger",
        "import launch",
        "from launch_ros.actions import Node",
        "from ament_index_python.packages import get_package_share_directory",
        "import rosbag2_py",
        "from rosidl_runtime_py import message_to_ordereddict",
        "from my_robot_msgs.msg import Cmd",
        "def f():\n    import rclpy\n    return rclpy",
        "try:\n    import rclpy\nexcept ImportError:\n    rclpy = None",
        "import importlib\nm = importlib.import_module('rclpy')",
        "m = __import__('sensor_msgs.msg')",
    ]
    for source in bad_sources:
        assert find_ros_imports(source), f"ROS import not detected in: {source!r}"


def test_ros_import_detector_allows_ordinary_imports():
    good_sources = [
        "import numpy as np\nimport torch\nfrom pathlib import Path",
        "from . import launch\nfrom .launch import x\nfrom ..msgs import y",
        "import gymnasium\nimport yaml\nimport cv2",
        "import launcher\nimport messages\nimport rclone_helpers",
        "x = 'import rclpy'  # a string, not an import",
    ]
    for source in good_sources:
        assert not find_ros_imports(source), source


def test_il_core_has_no_ros_imports():
    sources = il_core_sources()
    assert sources, "no Python files found under il_core/"
    offenders = []
    for path in sources:
        offenders += find_ros_imports(
            path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))
        )
    assert not offenders, "il_core must never import ROS (put ROS code in il_ros/):\n" + (
        "\n".join(offenders)
    )


def test_il_core_never_imports_sim():
    # sim depends on il_core, never the reverse: il_core finds sim's envs and experts through
    # the il_core.plugins entry point (il_core/plugins.py), even in a function body.
    assert find_ros_imports("def f():\n    from sim.experts import x", banned=is_sim_module)
    assert not find_ros_imports("import simplejson, simulate", banned=is_sim_module)
    offenders = []
    for path in il_core_sources():
        offenders += find_ros_imports(
            path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), is_sim_module
        )
    assert not offenders, "il_core must not import sim (register through a plugin):\n" + (
        "\n".join(offenders)
    )


def test_sim_is_found_as_an_il_core_plugin():
    from il_core.experts import EXPERTS, load_expert
    from il_core.plugins import load_plugins

    assert "sim" in load_plugins()
    assert {"cartpole_linear", "point_reach", "metaworld"} <= set(EXPERTS)
    import gymnasium as gym

    assert type(load_expert("auto", gym.make("CartPole-v1"))).__name__ == "CartPoleLinearExpert"


def test_importing_all_of_il_core_loads_no_ros():
    # Catches indirect imports (il_core -> some helper -> rclpy) that the ast check can't see.
    script = f"""
import importlib, json, pkgutil, sys
sys.path.insert(0, {str(ROOT)!r})
import il_core
failed = {{}}
for info in pkgutil.walk_packages(il_core.__path__, "il_core."):
    if info.name.rsplit(".", 1)[-1] == "__main__":
        continue
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = repr(exc)
print(json.dumps({{"modules": sorted(sys.modules), "failed": failed}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["failed"], f"il_core modules failed to import: {result['failed']}"
    loaded = [m for m in result["modules"] if is_ros_module(m)]
    assert not loaded, f"importing il_core loaded ROS modules: {loaded}"
    assert not [m for m in result["modules"] if is_sim_module(m)], "importing il_core loaded sim"


# --- package.xml / setup.py / il_core.__version__ agree -------------------------------------


def il_core_version() -> str:
    tree = ast.parse((ROOT / "il_core" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("il_core/__init__.py has no __version__")


@pytest.fixture(scope="module")
def manifest() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


@pytest.fixture(scope="module")
def setup_py_metadata() -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "setup.py", "--name", "--version", "--license"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    name, version, license_ = proc.stdout.strip().splitlines()[-3:]
    return {"name": name, "version": version, "license": license_}


def test_package_xml_is_format_3_ament_python(manifest):
    assert manifest.tag == "package"
    assert manifest.get("format") == "3"
    assert manifest.findtext("name") == "il_ros"
    assert manifest.findtext("license") == "Apache-2.0"
    assert manifest.findtext("export/build_type") == "ament_python"
    maintainer = manifest.find("maintainer")
    assert maintainer is not None and maintainer.get("email"), "a maintainer with an email"
    assert (manifest.findtext("description") or "").strip()


def test_package_xml_passes_catkin_pkg_validation():
    # catkin_pkg is the parser colcon-ros and rosdep use (installed with colcon-ros).
    try:
        from catkin_pkg.package import parse_package
    except ImportError:
        pytest.fail("catkin_pkg missing: install requirements-dev.txt (colcon-ros brings it)")
    package = parse_package(str(ROOT))
    package.validate()  # raises InvalidPackage with the reason
    assert package.package_format == 3
    assert package.get_build_type() == "ament_python"


def test_package_xml_dependencies(manifest):
    exec_depends = {e.text for e in manifest.findall("exec_depend")}
    exec_depends |= {e.text for e in manifest.findall("depend")}
    missing = REQUIRED_EXEC_DEPENDS - exec_depends
    assert not missing, f"package.xml lacks exec_depend on {sorted(missing)}"
    test_depends = {e.text for e in manifest.findall("test_depend")}
    assert "python3-pytest" in test_depends


def test_versions_agree(manifest, setup_py_metadata):
    version = il_core_version()
    assert manifest.findtext("version") == version, "package.xml <version> != il_core"
    assert setup_py_metadata["version"] == version, "setup.py version != il_core"
    assert setup_py_metadata["name"] == manifest.findtext("name")
    assert setup_py_metadata["license"] == manifest.findtext("license")


def test_resource_marker_exists():
    assert (ROOT / "resource" / "il_ros").is_file()


def test_shipped_python_directories_are_packages():
    # find_packages() skips a directory without __init__.py, and its modules would then be
    # missing from colcon's install (and from wheels) while still importing from the repo.
    missing = []
    for package in SHIPPED_PACKAGES:
        base = ROOT / package
        assert (base / "__init__.py").is_file(), f"{package}/__init__.py missing"
        for directory in [base, *(p for p in base.rglob("*") if p.is_dir())]:
            if directory.name == "__pycache__" or "__pycache__" in directory.parts:
                continue
            if any(directory.glob("*.py")) and not (directory / "__init__.py").is_file():
                missing.append(str(directory.relative_to(ROOT)))
    assert not missing, f"directories with Python files but no __init__.py: {missing}"


# --- configs --------------------------------------------------------------------------------

CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_yaml_parses(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: top level must be a mapping"


def test_a_broken_plugin_is_named(monkeypatch: pytest.MonkeyPatch):
    import importlib.metadata

    import il_core.plugins as plugins

    broken = importlib.metadata.EntryPoint(
        "my_sim", "no_such_module_il_ros_test", plugins.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(plugins, "_loaded", None)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken])
    with pytest.raises(plugins.PluginError, match="'my_sim'.*no_such_module_il_ros_test"):
        plugins.load_plugins()
    assert plugins._loaded is None  # the next call tries again
