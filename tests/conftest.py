"""Shared pytest fixtures, and ROS 2 isolation for the node tests.

ROS isolation happens at import, before any test module can import rclpy: every pytest
process (each xdist worker too) gets its own ``ROS_DOMAIN_ID`` and keeps DDS discovery on
localhost, so tests that run in parallel, or beside a real robot on the same network, never
see each other's topics. Child processes started by tests inherit these variables. A value
already set in the environment is kept, so a developer can still pin a domain by hand.
"""

import os
from pathlib import Path

import numpy as np
import pytest


def _ros_domain_id_for(pid: int) -> int:
    """A ROS domain id in 1..100 derived from a process id.

    0 is the default domain that ROS machines and tools use, so it is avoided; ids up to 101
    are valid on Linux for any number of participants per domain (higher ids can collide with
    the ephemeral port range).
    """
    return 1 + pid % 100


def _isolate_ros(environ: "os._Environ[str] | dict[str, str]") -> None:
    environ.setdefault("ROS_DOMAIN_ID", str(_ros_domain_id_for(os.getpid())))
    # Jazzy and later: discovery limited to this host.
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # Humble: the older switch with the same effect (ignored, with a warning, by newer ones).
    environ.setdefault("ROS_LOCALHOST_ONLY", "1")


_isolate_ros(os.environ)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, so tests that draw random data are reproducible."""
    return np.random.default_rng(0)


@pytest.fixture
def tmp_dataset_dir(tmp_path: Path) -> Path:
    """Path for a new dataset inside the test's tmp dir; not created (writers create it)."""
    return tmp_path / "dataset"


@pytest.fixture(scope="session")
def cartpole_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four scripted-expert CartPole episodes (seed 0): a dataset for training-loop tests."""
    from il_core.collect import collect

    out = tmp_path_factory.mktemp("cartpole") / "data"
    collect("CartPole-v1", "auto", 4, 0, out)
    return out
