"""``colcon build`` of the repository as a ROS 2 ament_python package installs what it should.

The package sources (files git tracks or would track; a filtered copy outside git) are
copied into a fresh workspace ``ws/src/il_ros`` and built with the colcon of this
environment (colcon-core + colcon-ros from requirements-dev.txt; no system ROS needed).
Then the install space must hold the ament index marker, package.xml, launch/ and config/,
the ``lib/il_ros`` scripts directory with ``il-core``, and the three Python packages.
"""

import os
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "il_ros"
SHIPPED_PACKAGES = ("il_core", "sim", "il_ros")
IGNORED = (".git", ".venv", ".venv-*", "build", "install", "log", "__pycache__", "*.egg-info")
IGNORED += (".pytest_cache", ".ruff_cache", "runs", "outputs", "*.pyc")


def find_colcon() -> str:
    """Return the colcon beside this interpreter (the venv's), else on PATH; fail if absent."""
    beside = Path(sys.executable).parent / "colcon"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("colcon")
    if on_path:
        return on_path
    pytest.fail(
        "colcon not found next to "
        f"{sys.executable} nor on PATH: run `make venv` (or `pip install -r "
        "requirements-dev.txt`, which installs colcon-core and colcon-ros) and run the tests "
        "from that environment."
    )


def source_files() -> list[Path]:
    """Repository files to build from, relative to ROOT: git's view when there is one."""
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return []
    paths = [Path(p) for p in out.decode().split("\0") if p]
    return [
        p
        for p in paths
        if (ROOT / p).is_file()  # skip tracked files deleted locally
        and not any(fnmatch(part, pattern) for part in p.parts for pattern in IGNORED)
    ]


def copy_sources(dest: Path) -> None:
    files = source_files()
    if files:
        for rel in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    else:
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*IGNORED))


def python_packages_in(source: Path, package: str) -> set[str]:
    return {
        ".".join(p.parent.relative_to(source).parts)
        for p in (source / package).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }


def test_colcon_build_installs_the_package(tmp_path):
    colcon = find_colcon()
    ws = tmp_path / "ws"
    src = ws / "src" / PKG
    src.mkdir(parents=True)
    copy_sources(src)
    assert (src / "package.xml").is_file() and (src / "setup.py").is_file()
    (src / "launch").mkdir(exist_ok=True)
    (src / "config").mkdir(exist_ok=True)
    if not list((src / "config").glob("*.yaml")):
        (src / "config" / "colcon_check.yaml").write_text("check: true\n")  # only in tmp copy

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLCON_HOME"] = str(tmp_path / "colcon_home")  # ignore the user's colcon defaults
    env.pop("COLCON_DEFAULTS_FILE", None)
    proc = subprocess.run(
        [colcon, "build", "--base-paths", "src", "--event-handlers", "console_direct+"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"colcon build failed ({proc.returncode}):\n{output[-6000:]}"
    assert f"Finished <<< {PKG}" in output, output[-6000:]

    prefix = ws / "install" / PKG
    share = prefix / "share" / PKG
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PKG).is_file()
    assert (share / "package.xml").read_bytes() == (src / "package.xml").read_bytes()
    for sub, pattern in (("launch", "*"), ("config", "*.yaml")):
        expected = sorted(p.name for p in (src / sub).glob(pattern) if p.is_file())
        installed = sorted(p.name for p in (share / sub).glob(pattern))
        assert expected, f"nothing in {sub}/ to install"
        assert installed == expected, f"share/{PKG}/{sub}: {installed} != {expected}"
    assert (share / "launch" / "README.md").is_file()

    scripts = prefix / "lib" / PKG
    assert scripts.is_dir(), "no lib/il_ros: setup.cfg's install_scripts is not applied"
    for exe in (
        "il-core",
        "sim_robot",
        "scripted_teleop",
        "teleop",
        "recorder",
        "inference",
        "dagger",
    ):  # what `ros2 run il_ros <exe>` and the launch files start
        assert (scripts / exe).is_file(), (exe, sorted(p.name for p in scripts.iterdir()))
    assert sorted(p.name for p in (share / "launch").glob("*.launch.py")) == sorted(
        p.name for p in (src / "launch").glob("*.launch.py")
    )

    candidates = [*prefix.glob("lib*/python3*/*-packages"), *prefix.glob("local/lib*/python3*/*")]
    site_dirs = [d for d in candidates if (d / "il_core").is_dir()]
    assert len(site_dirs) == 1, f"il_core not installed once under {prefix}: {site_dirs}"
    site = site_dirs[0]
    for package in SHIPPED_PACKAGES:
        expected = python_packages_in(src, package)
        installed = python_packages_in(site, package)
        assert expected, f"no Python package {package} in the sources"
        assert installed == expected, f"installed {package} subpackages differ"
    for unwanted in ("tests", "bench", "scripts"):
        assert not (site / unwanted).exists(), f"{unwanted}/ must not be installed"

    # The installed copy (not the repository) imports, and reports the package's version.
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import il_core, il_ros, sim; print(il_core.__file__); print(il_core.__version__)",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    il_core_file, version = check.stdout.split()[-2:]
    assert Path(il_core_file).is_relative_to(site), il_core_file
    assert f"<version>{version}</version>" in (share / "package.xml").read_text()
