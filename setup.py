"""Build script of the il_ros ROS 2 package (build type ament_python).

One distribution ships three Python packages: ``il_core`` (the framework-free library, never
imports ROS), ``sim`` (gymnasium simulators and scripted experts) and ``il_ros`` (ROS 2 nodes,
thin adapters around il_core). ``colcon build`` and ``pip install -e .`` both use this file.
"""

import ast
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "il_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    """Return ``__version__`` from il_core/__init__.py without importing il_core."""
    path = os.path.join(HERE, "il_core", "__init__.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"no __version__ = '...' assignment in {path}")


def files(pattern: str) -> list[str]:
    """Plain files matching ``pattern`` (relative to this directory), sorted, as relative paths.

    setuptools wants data_files sources relative to the project directory; globbing from HERE
    keeps this right whatever the current directory is.
    """
    found = glob(os.path.join(HERE, pattern))
    return sorted(os.path.relpath(p, HERE) for p in found if os.path.isfile(p))


setup(
    name=PACKAGE_NAME,
    version=read_version(),
    packages=find_packages(
        where=HERE,
        include=["il_core", "il_core.*", "sim", "sim.*", "il_ros", "il_ros.*"],
        exclude=["tests", "tests.*", "bench", "bench.*"],
    ),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE_NAME]),
        ("share/" + PACKAGE_NAME, ["package.xml"]),
        # Globbed, so a new launch file or config is installed without editing this file.
        ("share/" + PACKAGE_NAME + "/launch", files("launch/*")),
        ("share/" + PACKAGE_NAME + "/config", files("config/*.yaml")),
    ],
    # Runtime dependencies are listed in requirements*.txt (pip) and package.xml (rosdep);
    # keeping install_requires empty stops colcon / pip from pulling a second copy of torch.
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="il_ros maintainers",
    maintainer_email="il-ros@example.com",
    description=(
        "Imitation learning for ROS 2: record demonstrations, train policies "
        "(behaviour cloning, DAgger) and run them as ROS 2 nodes."
    ),
    license="Apache-2.0",
    python_requires=">=3.10",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "il-core = il_core.cli:main",
            # ROS 2 nodes (ros2 run il_ros <name>); each module also runs with python -m.
            "sim_robot = il_ros.sim_robot_node:main",
            "scripted_teleop = il_ros.scripted_teleop_node:main",
            "teleop = il_ros.teleop_node:main",
            "recorder = il_ros.recorder_node:main",
            "inference = il_ros.inference_node:main",
            "dagger = il_ros.dagger_node:main",
        ],
        # il_core loads its simulators and experts as plugins (il_core/plugins.py): importing
        # sim registers its gymnasium envs and scripted experts; il_core never imports sim.
        "il_core.plugins": ["sim = sim"],
    },
)
