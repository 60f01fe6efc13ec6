"""What every il_ros node shares: parameter declaration, QoS choices, topics, the main loop.

QoS is a decision per kind of stream:

- observations (cameras, joint states, odometry): subscribed BEST_EFFORT, keep last 5. A
  best-effort subscription matches both best-effort publishers (most camera drivers) and
  reliable ones, and never makes a publisher wait on a slow node. Set ``reliable_sensors``
  to true where losses matter more than latency.
- commands: RELIABLE, keep last 1: only the newest command matters, but it must arrive.
- latched state (deadman held, expert engaged, episode status): RELIABLE + TRANSIENT_LOCAL,
  depth 1, so a node that starts late still learns the current state.
- episode control (start/stop/discard/success/failure): RELIABLE, keep last 10, so a burst
  of button presses is not collapsed.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.client import Client
from rclpy.executors import (
    Executor,
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.service import Service
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from rclpy.timer import Timer

from il_core.config import ConfigError
from il_core.mapping import RobotMapping, load_mapping

#: Episode control commands (std_msgs/String) from teleop buttons or scripts to recorders.
EPISODE_CONTROL_TOPIC = "/il_ros/episode_control"
EPISODE_COMMANDS = ("start", "stop", "discard", "success", "failure")


def sensor_qos(reliable: bool = False, depth: int = 5) -> QoSProfile:
    """Subscription QoS for observation streams (see module docstring)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def publisher_sensor_qos(depth: int = 5) -> QoSProfile:
    """Publisher QoS for observation streams: reliable (matches any subscriber)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
CONTROL_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def declare(
    node: Node,
    name: str,
    default: Any,
    description: str,
    *,
    valid_range: tuple[float, float] | None = None,
    read_only: bool = False,
    dynamic_typing: bool = False,
) -> Any:
    """Declare a parameter with a description and an optional valid range; return its value.

    Integer defaults get an ``IntegerRange``, float defaults a ``FloatingPointRange``, so ROS
    itself rejects out-of-range values set at start-up (``--params-file``) or at run time.
    ``dynamic_typing`` lets a parameter hold a word or a number (``"checkpoint"`` or ``4``),
    as ``ros2 param set`` and a YAML file give them; the node parses it on configure.
    """
    desc = ParameterDescriptor(
        description=description, read_only=read_only, dynamic_typing=dynamic_typing
    )
    if valid_range is not None:
        lo, hi = valid_range
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        elif isinstance(default, float):
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)
            ]
    return node.declare_parameter(name, default, desc).value


def destroy_entities(node: Node, entities: list[Any]) -> None:
    """Destroy every publisher, subscription, service, client and timer in ``entities``.

    What a lifecycle node's configure made, on cleanup and shutdown; the list is emptied.
    """
    destroyers: list[tuple[type, Callable[[Any], Any]]] = [
        (Publisher, node.destroy_publisher),
        (Subscription, node.destroy_subscription),
        (Service, node.destroy_service),
        (Client, node.destroy_client),
        (Timer, node.destroy_timer),
    ]
    for entity in entities:
        destroy = next((d for cls, d in destroyers if isinstance(entity, cls)), None)
        if destroy is None:
            raise TypeError(f"cannot destroy a {type(entity).__name__}")
        destroy(entity)
    entities.clear()


def stamp_now(node: Node) -> float:
    """The node's clock now, in seconds (sim time when ``use_sim_time`` is set)."""
    return node.get_clock().now().nanoseconds * 1e-9


def diagnostic_array(
    node: Node, name: str, level: int | bytes, message: str, values: dict[str, Any]
) -> Any:
    """A ``diagnostic_msgs/DiagnosticArray`` with one status of key/value pairs."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    st = DiagnosticStatus(
        # DiagnosticStatus.OK/WARN/ERROR are bytes constants in rclpy; plain ints work too.
        level=level if isinstance(level, bytes) else bytes([level]),
        name=name,
        message=message,
        hardware_id=node.get_fully_qualified_name(),
    )
    st.values = [
        KeyValue(key=k, value=v if isinstance(v, str) else json.dumps(v, default=str))
        for k, v in values.items()
    ]
    arr.status = [st]
    return arr


NodeT = TypeVar("NodeT", bound=Node)

#: The values of every node's ``executor`` parameter. Each node keeps all its callbacks in
#: its default callback group, which is mutually exclusive, so none of them runs while another
#: of the same node does, with any of these; the threads a node owns (the dataset writer, the
#: inference worker, the checkpoint loader) hand their results over through queues and
#: futures. Hence no callback group and no lock of ours guards node state.
#:
#: - ``single``: ``SingleThreadedExecutor``, the default (see :func:`spin_node`).
#: - ``events``: rclpy's ``EventsExecutor`` (``rclpy.experimental``, Jazzy and later), less
#:   overhead per callback, measured in ``bench/bench_ros.py --executors``.
#: - ``multi``: ``MultiThreadedExecutor`` with 3 threads, for comparison only.
EXECUTORS = ("single", "events", "multi")


def make_executor(node: Node) -> Executor:
    """The executor the node's ``executor`` parameter names (declared here if need be).

    Raises:
        ConfigError: an unknown name, or ``events`` on an rclpy that lacks it (Humble).
    """
    if not node.has_parameter("executor"):
        node.declare_parameter(
            "executor",
            "single",
            ParameterDescriptor(
                description=f"rclpy executor that spins this node: one of {list(EXECUTORS)}",
                read_only=True,
            ),
        )
    kind = str(node.get_parameter("executor").value)
    if kind == "single":
        return SingleThreadedExecutor()
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=3)
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError as e:
            raise ConfigError(
                f"parameter 'executor' is 'events', but this rclpy has no EventsExecutor ({e})"
            ) from None
        return EventsExecutor()
    raise ConfigError(f"parameter 'executor' must be one of {list(EXECUTORS)}, got {kind!r}")


def spin_node(
    make_node: Callable[[], NodeT],
    args: Sequence[str] | None = None,
    *,
    on_exit: Callable[[NodeT], None] | None = None,
    startup_errors: tuple[type[BaseException], ...] = (ConfigError, OSError),
    name: str | None = None,
) -> int:
    """Initialise rclpy, spin ``make_node()`` in the executor it asks for, shut down cleanly.

    The executor is the node's read-only parameter ``executor`` (:data:`EXECUTORS`;
    ``--ros-args -p executor:=events``), declared here for every node. ``single``, rclpy's
    ``SingleThreadedExecutor``, is the default on purpose. With rclpy's
    ``MultiThreadedExecutor`` (Kilted), our recorder received episode commands and sensor
    samples up to 3 s late in about a third of test runs on an idle 2-core machine (the
    executor skips ready entities whose mutually exclusive callback group is busy, a known
    family of rclpy/rclcpp executor bugs); with the single-threaded executor, never in the
    same runs. Work that may block runs on
    threads the node owns: the dataset writer (:class:`il_core.data.BackgroundWriter`),
    policy inference ahead of the queue (:class:`il_core.execution.PolicyExecutor`), and
    checkpoint loading on reload (an ``async`` service callback).

    Signals: SIGINT and SIGTERM only set a stop flag (and wake the executor), from the first
    signal until the process exits; they never raise. Under ``ros2 launch`` a Ctrl-C reaches
    each node twice (the terminal signals the whole process group and launch forwards its
    own SIGINT), and a second signal that raised ``KeyboardInterrupt`` inside ``on_exit`` or
    ``destroy_node`` skipped the safe stop or crashed the teardown (seen in about 1 launch in
    10). Teardown is bounded by its own timeouts (the writer's close, the inference worker)
    and by a watchdog on the ROS teardown (:data:`TEARDOWN_TIMEOUT_S`). A node whose loop
    does not leave ``spin_once`` within :data:`STOP_STALL_S` of a signal prints the stack of
    every thread (:class:`_StopStallReport`), so that a hang says where it is before
    ``ros2 launch`` escalates to SIGTERM and SIGKILL.

    Args:
        make_node: Builds the node (declares parameters, loads the mapping...).
        args: Command-line arguments for ``rclpy.init``.
        on_exit: Runs before the node is destroyed, also on Ctrl-C and external shutdown,
            so a node can command a safe stop or finish an episode.
        startup_errors: Exceptions from ``make_node`` that are the user's to fix (a bad
            mapping, a missing file): logged as one error line, exit code 2, no traceback.
        name: Logger name for those errors (default: the module's node name is unknown
            before the node exists, so ``il_ros``).

    Returns:
        The process exit code: 0 after a normal shutdown, 2 for a startup error.
    """
    # rclpy's own SIGINT handler would shut the context down before ``on_exit`` runs, and a
    # safe-stop command could then no longer be published; ours only asks the loop to stop.
    # Raising KeyboardInterrupt from the handler could also land inside rclpy's C++ message
    # conversion, which then fails with an unrelated RuntimeError. Works on Humble and later
    # (``rclpy.init`` is not used as a context manager, which Humble lacks).
    stop = threading.Event()
    executor: Executor | None = None

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()
        if executor is not None:
            executor.wake()

    # Installed before rclpy.init and never restored: a signal may arrive at any moment of
    # start-up or teardown, and the default handler would raise there.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    stall = _StopStallReport(name or "il_ros")
    rclpy.init(
        args=list(args) if args is not None else None,
        signal_handler_options=SignalHandlerOptions.NO,
    )
    node = None
    code = 0
    try:
        node = make_node()
        stall.name = node.get_name()
        executor = make_executor(node)
        executor.add_node(node)
        # spin_once with a timeout, not spin(): a node with no timer (an unconfigured
        # lifecycle node) would otherwise block in the wait and see the stop request late.
        while rclpy.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=0.2)
    except startup_errors as e:
        if node is not None:
            raise  # not a start-up error: the node was running
        get_logger(name or "il_ros").error(str(e))
        code = 2
        _destroy_half_built_nodes(e)
    except ExternalShutdownException:
        pass
    finally:
        stall.stopping()
        if node is not None:
            if on_exit is not None:
                try:
                    on_exit(node)
                except Exception as e:  # never let a failing hook mask the shutdown itself
                    node.get_logger().error(f"error during shutdown: {type(e).__name__}: {e}")
        # What mattered is done (safe stop delivered, episode committed): the DDS teardown
        # below once in about a hundred shutdowns never returned (in destroy_node, with five
        # other nodes exiting at once). It may not turn a clean stop into a hung process.
        watchdog = threading.Timer(TEARDOWN_TIMEOUT_S, _exit_after_hung_teardown, (code,))
        watchdog.daemon = True
        watchdog.start()
        if node is not None:
            if executor is not None:
                executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
        rclpy.try_shutdown()
        watchdog.cancel()
        # From here on the process only exits. Interpreter finalisation resets Python-level
        # handlers to the OS default, so a second Ctrl-C arriving then would kill the process
        # by signal (exit -2) after a clean shutdown; ignored signals stay ignored.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stall.close()
    return code


#: Seconds the ROS teardown (node destruction, context shutdown) may take after the node's
#: own shutdown work before the process exits without it.
TEARDOWN_TIMEOUT_S = 3.0


#: Seconds between a stop signal and the start of the node's shutdown work after which the
#: stack of every thread is printed: the control loop is stuck somewhere.
STOP_STALL_S = 3.0


def _destroy_half_built_nodes(error: BaseException) -> None:
    """Destroy the node whose constructor raised ``error``, while the context still lives.

    A node that refuses its configuration raises from its ``__init__`` after rclpy's
    ``Node.__init__`` created its handle, publishers and parameter services. Left to the
    garbage collector, that half-built node was destroyed implicitly when the exception
    went out of scope, and once under Python 3.10 rclpy crashed there (SIGSEGV instead of
    exit code 2, in a CI run of the suite; 80 such exits by hand did not repeat it).
    ``Node.destroy_node`` (rclpy's own, not a subclass's, which may expect attributes the
    constructor never set) destroys it in order; the traceback's frames are then cleared
    so nothing refers to it any more.
    """
    tb = error.__traceback__
    seen: set[int] = set()
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, Node) and id(value) not in seen:
                seen.add(id(value))
                try:
                    Node.destroy_node(value)
                except Exception:  # a half-built node: destroy what exists, never raise
                    pass
        tb = tb.tb_next
    traceback.clear_frames(error.__traceback__)


def _dump_stacks(headline: str) -> None:
    """Print ``headline`` and the Python stack of every thread to stderr."""
    print(f"il_ros: {headline}; where each thread is:", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def _exit_after_hung_teardown(code: int) -> None:
    _dump_stacks(
        f"the ROS teardown did not finish in {TEARDOWN_TIMEOUT_S:g} s after a complete "
        "shutdown, exiting without it"
    )
    os._exit(code)


class _StopStallReport:
    """Prints where every thread is when a node does not act on a stop signal in time.

    A node that ignores Ctrl-C is the worst kind of robot fault to debug: ``ros2 launch``
    escalates to SIGTERM after 5 s and SIGKILL after 10 more, and the log says only that the
    process "failed to terminate". Once in about 150 launches here a recorder did not
    leave its spin loop after SIGINT; this report says where it was.

    The signal is noticed without the main thread: Python's C-level handler writes the
    signal number to a wakeup file descriptor (``signal.set_wakeup_fd``) even when the main
    thread is blocked in C and the Python-level handler cannot run, and a daemon thread
    reading it starts the clock. If :meth:`stopping` is not called within
    :data:`STOP_STALL_S`, the stack of every thread goes to stderr (``faulthandler``).

    Args:
        name: The node, for the report's first line (:attr:`name`, updated once it exists).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._stopping = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="il_ros-stop-stall", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        # The read end stays open until close(): later signals are still written to the pipe
        # (a closed read end would make each of them a BrokenPipeError report).
        try:
            signalled = bool(os.read(self._read_fd, 1))  # b"": closed, the node shut down
        except OSError:
            signalled = False
        if not signalled or self._stopping.wait(STOP_STALL_S):
            return
        _dump_stacks(
            f"{self.name} has not begun its shutdown {STOP_STALL_S:g} s after a stop signal"
        )

    def stopping(self) -> None:
        """The spin loop has ended: shutdown work begins."""
        self._stopping.set()

    def close(self) -> None:
        """Restore the previous wakeup descriptor and end the watching thread."""
        self._stopping.set()
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write_fd)  # a reader still waiting sees end of file
        self._thread.join(1.0)
        os.close(self._read_fd)


def publish_and_flush(publisher: Any, msg: Any, timeout_s: float = 0.5) -> bool:
    """Publish ``msg`` and wait until every reliable subscriber acknowledged it.

    For the last message a node sends before it exits (the safe stop): without waiting, the
    process can tear its DDS participant down before the sample left, and the robot would
    keep the last real command. Best-effort subscribers are not waited for.

    Returns:
        Whether all reliable subscribers acknowledged within ``timeout_s``.
    """
    from rclpy.duration import Duration

    publisher.publish(msg)
    return bool(publisher.wait_for_all_acked(Duration(nanoseconds=int(timeout_s * 1e9))))


def stream_callback(
    node: Node,
    aligner: Any,
    name: str,
    decode: Callable[[Any], Any],
    on_malformed: Callable[[], None] | None = None,
) -> Callable[[Any], None]:
    """Subscription callback that only converts and caches a message (never raises).

    A message that cannot be converted is counted on ``aligner`` (``count_malformed``) and
    logged, throttled; the node goes on.
    """

    def callback(msg: Any) -> None:
        received = stamp_now(node)
        try:
            value, stamp = decode(msg)
        except (ValueError, TypeError, IndexError, AttributeError, KeyError) as e:
            aligner.count_malformed(name)
            if on_malformed is not None:
                on_malformed()
            node.get_logger().warning(
                f"malformed message on stream {name!r}: {e}", throttle_duration_sec=2.0
            )
            return
        aligner.put(name, value, stamp, received)

    return callback


def resolve_config_path(path: str) -> Path:
    """Find a config file given as an absolute path or relative to cwd, the package or repo.

    A relative path that does not exist from the working directory is looked up in the
    installed package's share directory (``colcon build``) and then next to the source tree
    (``pip install -e .``), so ``config/point_reach_mapping.yaml`` works from anywhere.

    Raises:
        ConfigError: the file is found nowhere; the message lists where it looked.
    """
    p = Path(path).expanduser()
    candidates = [p]
    if not p.is_absolute():
        try:
            from ament_index_python.packages import get_package_share_directory

            candidates.append(Path(get_package_share_directory("il_ros")) / p)
        except Exception:  # not installed with colcon: PackageNotFoundError, or no ament
            pass
        candidates.append(Path(__file__).resolve().parents[1] / p)
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"{path}: file not found (looked in {[str(c) for c in candidates]})")


def load_node_mapping(path: str) -> tuple[Path, RobotMapping]:
    """:func:`resolve_config_path` then :func:`il_core.mapping.load_mapping`."""
    resolved = resolve_config_path(path)
    return resolved, load_mapping(resolved)


def safe_command(sink: Any, aligner: Any | None) -> Any:
    """The mapping's safe command as ``(D,)`` float32.

    ``zero``: all zeros (stop a velocity-controlled base). ``hold``: the newest observed values
    of ``hold_from`` (hold a position-controlled arm where it is), zeros if none arrived yet.
    """
    import numpy as np

    if sink.safe_stop == "hold" and aligner is not None:
        sample = aligner.cache(sink.hold_from).latest_at(float("inf"))
        if sample is not None:
            return np.asarray(sample.value, np.float32)[: sink.dim]
    return np.zeros(sink.dim, np.float32)
