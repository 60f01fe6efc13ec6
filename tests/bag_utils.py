"""Writing rosbag2 files in tests the way ``ros2 bag record`` does.

``ros2 bag record`` (rosbag2, not on PyPI) stores each message as its CDR serialisation with
the time it received it. :class:`BagRecorder` does the same with the ``rosbags`` writer: CDR
bytes from rclpy (``serialize_message``, or a raw subscription's bytes) and a log time in
nanoseconds, for MCAP and sqlite3 alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

_TYPESTORE = get_typestore(Stores.ROS2_KILTED)
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagRecorder:
    """One rosbag2 being written (a context manager).

    Args:
        path: The bag directory to create (must not exist).
        storage: ``"mcap"`` or ``"sqlite3"``.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        self.writer = Writer(Path(path), version=9, storage_plugin=STORAGES[storage])
        self.writer.open()
        self._connections: dict[str, Any] = {}

    def write_raw(self, topic: str, msgtype: str, t_ns: int, data: bytes) -> None:
        """Store CDR ``data`` received at ``t_ns`` on ``topic`` of ``msgtype`` (pkg/msg/T)."""
        conn = self._connections.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=_TYPESTORE)
            self._connections[topic] = conn
        self.writer.write(conn, int(t_ns), data)

    def write(self, topic: str, msgtype: str, t: float, msg: Any) -> None:
        """Store an rclpy message received at ``t`` seconds."""
        self.write_raw(topic, msgtype, round(t * 1e9), serialize_message(msg))

    def close(self) -> None:
        """Finish the bag (writes its metadata.yaml)."""
        self.writer.close()

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
