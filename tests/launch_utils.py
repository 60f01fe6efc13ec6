"""Helpers for tests that run the package the way its users do: colcon, ``ros2 launch``.

- :func:`launch_tools_missing` says why ``ros2 launch`` cannot run here (the tools are not
  on PyPI: ``../shared/ros2-tools/install.sh PYTHON`` installs them, a sourced ROS 2 has
  them), or None.
- :func:`build_install` builds the package with colcon into a fresh workspace and returns
  the environment of a shell that sourced ``install/setup.bash``.
- :class:`Launched` runs a command (``ros2 launch ...``) in its own process group, so that
  :meth:`Launched.interrupt` signals the whole group the way a terminal's Ctrl-C does (each
  node then also gets launch's forwarded SIGINT), and parses launch's report of how every
  node exited.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_colcon_build import copy_sources, find_colcon

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT.parent / "shared" / "ros2-tools"

#: ``[recorder-3] [WARN] [...]`` lines: what a node logged at WARN or worse.
NODE_WARNING = re.compile(r"^\[(?P<node>[\w]+)-\d+\] \[(?P<level>WARN|ERROR|FATAL)\]", re.M)
_CLEAN = re.compile(r"^\[INFO\] \[(?P<node>[\w]+)-\d+\]: process has finished cleanly", re.M)
_DIED = re.compile(
    r"^\[ERROR\] \[(?P<node>[\w]+)-\d+\]: process has died \[pid \d+, exit code (?P<rc>-?\d+)",
    re.M,
)


def launch_tools_missing() -> str | None:
    """Why the ROS 2 launch tools cannot run here, or None if they can."""
    missing = [
        m for m in ("launch", "launch_ros", "ros2cli") if importlib.util.find_spec(m) is None
    ]
    ros2 = Path(sys.executable).parent / "ros2"
    if missing or not (ros2.is_file() or shutil.which("ros2")):
        hint = f"{TOOLS}/install.sh {sys.executable}" if TOOLS.is_dir() else "source a ROS 2"
        return (
            f"the ROS 2 launch tools are not installed ({missing or 'no ros2 command'}): "
            f"they are not on PyPI; run {hint} (make venv does it where {TOOLS} exists)"
        )
    return None


def build_install(ws: Path) -> dict[str, str]:
    """``colcon build`` the package in ``ws`` and return the sourced environment.

    Returns:
        ``os.environ`` plus what ``source install/setup.bash`` set (``AMENT_PREFIX_PATH``,
        ``PYTHONPATH``, ``PATH``...), with the interpreter's bin/ (the venv's ``ros2``) first.
    """
    src = ws / "src" / "il_ros"
    src.mkdir(parents=True)
    copy_sources(src)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLCON_HOME"] = str(ws / "colcon_home")
    proc = subprocess.run(
        [find_colcon(), "build", "--packages-select", "il_ros"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = subprocess.run(
        ["bash", "-c", "source install/setup.bash && env -0"],
        cwd=ws,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    sourced = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    sourced["RCUTILS_COLORIZED_OUTPUT"] = "0"
    sourced["PYTHONUNBUFFERED"] = "1"
    # A node that crashes (SIGSEGV, SIGABRT) prints the Python stack of every thread.
    sourced["PYTHONFAULTHANDLER"] = "1"
    return sourced


def run(cmd: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    """Run a shell command line (as a user types it) and return its output; fail on error."""
    proc = subprocess.run(
        ["bash", "-c", cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{cmd!r} exited with {proc.returncode}:\n{output[-4000:]}"
    return output


def run_cli(cmd: str, env: dict[str, str], cwd: Path, timeout: float = 60, tries: int = 5) -> str:
    """:func:`run` for a ``ros2`` CLI verb that needs the node in the daemon's graph.

    The ros2 daemon discovers a node that just started within a second or two; until then a
    verb answers "Node not found", and a person would simply type it again.
    """
    for attempt in range(tries):
        try:
            return run(cmd, env, cwd, timeout)
        except AssertionError as e:
            if "Node not found" not in str(e) or attempt == tries - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


class Launched:
    """A command (``ros2 launch ...``) running in its own process group, output to a file.

    Args:
        cmd: Shell command line.
        env: Its environment (a sourced workspace).
        cwd: Working directory.
        log: File receiving stdout and stderr.
    """

    def __init__(self, cmd: str, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.cmd, self.log_path = cmd, log
        with open(log, "wb") as out:
            # exec: the shell becomes the command, so the group leader is ros2 launch itself.
            self.proc = subprocess.Popen(
                ["bash", "-c", f"exec {cmd}"],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def log(self) -> str:
        """Everything printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match:
        """Wait until the output matches ``pattern``; fail with the output if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log(), re.M)
            if m:
                return m
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"no {pattern!r} in the output of {self.cmd!r} "
                    f"(exit {self.proc.poll()}):\n{self.log()[-6000:]}"
                )
            time.sleep(0.1)

    def interrupt(self) -> float:
        """Ctrl-C as a terminal sends it: SIGINT to the whole process group; returns when."""
        sent = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        return sent

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the command to exit; kill the group and fail if it does not in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(
                f"{self.cmd!r} did not exit in {timeout} s:\n{self.report()}"
            ) from None

    def node_exits(self) -> dict[str, int]:
        """Exit code of every node, from launch's own report (0: finished cleanly)."""
        text = self.log()
        exits = {m["node"]: 0 for m in _CLEAN.finditer(text)}
        exits.update({m["node"]: int(m["rc"]) for m in _DIED.finditer(text)})
        return exits

    def report(self, tail: int = 40) -> str:
        """What a failure message needs first: launch's own lines, then the output's tail.

        CI shows only part of a long failure; launch's lines (which process died, with which
        exit code, what was escalated to SIGTERM or SIGKILL) come first and are short.
        """
        lines = self.log().splitlines()
        own = [ln for ln in lines if re.match(r"^\[(INFO|WARNING|ERROR)\] \[", ln)]
        return "\n".join(
            ["launch said:", *own[-30:], f"last {tail} lines of output:", *lines[-tail:]]
        )

    def warnings(self) -> list[str]:
        """Lines the nodes logged at WARN, ERROR or FATAL."""
        text = self.log()
        return [text[m.start() : text.find("\n", m.start())] for m in NODE_WARNING.finditer(text)]

    def assert_clean_exit(self, nodes: set[str], rc: int, allowed: str | None = None) -> None:
        """Exit 0, every node in ``nodes`` finished cleanly, no traceback, no warning.

        Args:
            nodes: The nodes the launch started.
            rc: The launch's exit code.
            allowed: Regular expression of warnings that are expected in this run.
        """
        text = self.log()
        assert rc == 0, f"{self.cmd!r} exited with {rc}:\n{self.report()}"
        exits = self.node_exits()
        assert exits == dict.fromkeys(nodes, 0), (
            f"node exits {exits}, expected every one of {sorted(nodes)} to exit 0:\n"
            f"{self.report()}"
        )
        assert "Traceback" not in text, self.report()
        warnings = [w for w in self.warnings() if allowed is None or not re.search(allowed, w)]
        assert not warnings, warnings

    def kill(self) -> None:
        """SIGKILL the group if it still runs (test clean-up)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
