"""Helpers for node tests that start real il_ros node processes and talk to them over DDS.

- :func:`start_node` runs ``python -m il_ros.<module> --ros-args --params-file ...`` as a
  child process whose stdout and stderr go to a log file (``proc.log_path``), so a failing
  test can show what the node said. Children inherit ``ROS_DOMAIN_ID`` and localhost-only
  discovery from ``tests/conftest.py``, so every pytest process talks in its own domain.
- :func:`stop_node` sends a signal (SIGINT by default, like Ctrl-C) and returns the exit code,
  killing the process if it does not exit in time.
- :class:`RosProbe` is an in-process rclpy node in its own :class:`rclpy.Context`, spun in a
  background thread: subscribe and record, publish, call ``std_srvs/Trigger`` services, and
  :meth:`RosProbe.wait_for` a condition, failing with the logs of the nodes it started.
- :func:`ros_probe` is a module-scoped pytest fixture yielding a :class:`RosProbe`; it stops
  every node started through it at the end of the module. Import it into a test module
  (``from tests.ros_utils import ros_probe  # noqa: F401``) to use it.

Parameter files: ROS refuses an integer for a parameter declared as a float, so write
float parameters as floats (``1.0``, not ``1``) in ``params``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile

REPO_ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# Every process and probe started here, so that none outlives the test session (atexit below).
_STARTED: list[subprocess.Popen] = []
_PROBES: list[RosProbe] = []


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGKILL if pytest dies, so no node outlives a killed test run."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_node(
    module: str,
    params: dict[str, Any] | None = None,
    params_file: Path | str | None = None,
    node_name: str | None = None,
    remaps: dict[str, str] | None = None,
    log_path: Path | str | None = None,
    extra_args: list[str] | None = None,
) -> subprocess.Popen:
    """Start ``python -m il_ros.<module> --ros-args ...`` as a child process.

    Args:
        module: Module name inside ``il_ros`` (``"sim_robot_node"``) or a dotted module path.
        params: Parameters for the node, written to a temporary YAML file under ``/**:``
            ``ros__parameters:`` (so they apply whatever the node is named). Passed after
            ``params_file``, so they override it.
        params_file: A parameter YAML file (e.g. ``config/sim_robot.yaml``).
        node_name: Rename the node (``-r __node:=name``).
        remaps: Topic/service remappings ``{old: new}`` (``-r old:=new``).
        log_path: File that receives the node's stdout and stderr; default a new file in a
            temporary directory. Available afterwards as ``proc.log_path``.
        extra_args: More arguments appended after the ``--ros-args`` ones.

    Returns:
        The process, with ``log_path`` (Path) and ``name`` (str) attributes added.
    """
    dotted = module if "." in module else f"il_ros.{module}"
    name = node_name or dotted.rsplit(".", 1)[-1]
    tmp = Path(tempfile.mkdtemp(prefix=f"il_ros_{name}_"))
    log = Path(log_path) if log_path is not None else tmp / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-u", "-m", dotted, "--ros-args"]
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    if params:
        pfile = tmp / "params.yaml"
        pfile.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        cmd += ["--params-file", str(pfile)]
    if node_name:
        cmd += ["-r", f"__node:={node_name}"]
    for old, new in (remaps or {}).items():
        cmd += ["-r", f"{old}:={new}"]
    cmd += list(extra_args or [])
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        # A crash in C (DDS, OpenCV) prints the Python stack of every thread to the log.
        PYTHONFAULTHANDLER="1",
        RCUTILS_COLORIZED_OUTPUT="0",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
        # rclpy also writes log files; keep them next to the captured output, not in ~/.ros.
        ROS_LOG_DIR=str(tmp / "ros_log"),
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env=env,
            preexec_fn=_set_parent_death_signal if sys.platform == "linux" else None,
        )
    proc.log_path = log  # type: ignore[attr-defined]
    proc.name = name  # type: ignore[attr-defined]
    _STARTED.append(proc)
    return proc


def stop_node(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
    """Send ``sig`` to a node process and wait for it; kill it after ``timeout`` seconds.

    A process that does not exit in time gets SIGABRT before SIGKILL: with
    ``PYTHONFAULTHANDLER=1`` (:func:`start_node` sets it) it prints the Python stack of every
    thread to its log first, so a hang says where it was.

    Returns:
        The exit code (negative signal number when it was killed by a signal).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGABRT)
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return proc.returncode


def node_log(proc: subprocess.Popen, tail: int | None = None) -> str:
    """What a node started by :func:`start_node` printed (the last ``tail`` characters)."""
    path = getattr(proc, "log_path", None)
    if path is None or not Path(path).exists():
        return ""
    text = Path(path).read_text(errors="replace")
    return text if tail is None else text[-tail:]


def describe_nodes(procs: list[subprocess.Popen], tail: int = 4000) -> str:
    """Exit status and log tail of each process, for assertion messages."""
    parts = []
    for p in procs:
        rc = p.poll()
        state = "running" if rc is None else f"exited with {rc}"
        name = getattr(p, "name", str(p.args))
        parts.append(f"--- {name} ({state}), log {getattr(p, 'log_path', '?')}:\n")
        parts.append(node_log(p, tail) or "(no output)\n")
    return "".join(parts)


@atexit.register
def _kill_leftovers() -> None:
    # A probe left open would be torn down by the interpreter while its thread spins in C,
    # which aborts the process; close it properly first.
    for probe in list(_PROBES):
        with contextlib.suppress(Exception):
            probe.close()
    for p in _STARTED:
        if p.poll() is None:
            p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


class RosProbe:
    """An rclpy node in its own context, spun in a background thread, for tests.

    Messages are recorded by the executor thread; lists returned by :meth:`subscribe` grow
    while the test runs (list appends are atomic, so reading them from the test is safe).

    Args:
        name: Node name of the probe.
    """

    def __init__(self, name: str = "test_probe") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        #: Processes whose logs failing waits print (those started by :meth:`start_node`).
        self.nodes: list[subprocess.Popen] = []
        self._clients: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()
        self._closed = False
        _PROBES.append(self)

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutdown races while closing
                if self._stop.is_set() or not self.context.ok():
                    return
                raise

    # Graph -------------------------------------------------------------------------------

    def subscribe(
        self, topic: str, msg_type: type, qos: QoSProfile | int = 10
    ) -> list[tuple[Any, float]]:
        """Record every message on ``topic``.

        Returns:
            A list that receives ``(msg, receive_time)`` tuples (``time.monotonic()``).
        """
        received: list[tuple[Any, float]] = []
        self.node.create_subscription(
            msg_type, topic, lambda m: received.append((m, time.monotonic())), qos
        )
        return received

    def publisher(self, topic: str, msg_type: type, qos: QoSProfile | int = 10) -> Any:
        """A publisher of the probe node."""
        return self.node.create_publisher(msg_type, topic, qos)

    def call_trigger(self, service: str, timeout: float = 5.0) -> tuple[bool, str]:
        """Call a ``std_srvs/Trigger`` service.

        Returns:
            ``(success, message)`` of the response.

        Raises:
            AssertionError: the service is not available or does not answer in ``timeout``.
        """
        from std_srvs.srv import Trigger

        client = self._clients.get(service)
        if client is None:
            client = self._clients[service] = self.node.create_client(Trigger, service)
        deadline = time.monotonic() + timeout
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(self._failure(f"service {service} available", timeout))
        future = client.call_async(Trigger.Request())
        while not future.done():
            if time.monotonic() > deadline:
                raise AssertionError(self._failure(f"a response from {service}", timeout))
            time.sleep(0.01)
        response = future.result()
        return bool(response.success), str(response.message)

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 15.0) -> None:
        """Wait until ``topic`` has at least ``count`` publishers."""
        self.wait_for(
            lambda: self.node.count_publishers(topic) >= count,
            timeout,
            f"{count} publisher(s) on {topic}",
        )

    def wait_for_subscribers(self, topic: str, count: int = 1, timeout: float = 15.0) -> None:
        """Wait until ``topic`` has at least ``count`` subscribers."""
        self.wait_for(
            lambda: self.node.count_subscribers(topic) >= count,
            timeout,
            f"{count} subscriber(s) on {topic}",
        )

    # Waiting and node processes -----------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition"
    ) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that.

        Raises:
            AssertionError: after ``timeout`` seconds, naming ``what`` and showing the exit
                status and log of every node started through this probe.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(self._failure(what, timeout))
            time.sleep(0.02)

    def _failure(self, what: str, timeout: float) -> str:
        return f"timed out after {timeout:.1f} s waiting for {what}\n" + describe_nodes(self.nodes)

    def start_node(self, module: str, **kwargs: Any) -> subprocess.Popen:
        """:func:`start_node`, tracked so that failures show its log and close stops it."""
        proc = start_node(module, **kwargs)
        self.nodes.append(proc)
        return proc

    def assert_alive(self, proc: subprocess.Popen) -> None:
        """Fail (with the node's log) if ``proc`` has exited."""
        if proc.poll() is not None:
            raise AssertionError(
                f"{getattr(proc, 'name', proc.args)} exited with {proc.returncode}\n"
                + describe_nodes([proc])
            )

    def stop_nodes(self, timeout: float = 10.0) -> dict[str, int]:
        """SIGINT every node started through the probe (in reverse order); exit codes."""
        codes = {}
        for p in reversed(self.nodes):
            codes[getattr(p, "name", str(p.pid))] = stop_node(p, timeout=timeout)
        self.nodes.clear()
        return codes

    def close(self) -> None:
        """Stop the started nodes, the spin thread, and shut the context down."""
        if self._closed:
            return
        self._closed = True
        _PROBES.remove(self)
        self.stop_nodes()
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def ros_probe() -> Iterator[RosProbe]:
    """A :class:`RosProbe` shared by a test module; its nodes are stopped at the end."""
    probe = RosProbe()
    try:
        yield probe
    finally:
        probe.close()
