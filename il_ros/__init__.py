"""il_ros: ROS 2 nodes of the package, thin adapters around il_core.

The learning itself (datasets, policies, training, execution) lives in il_core, which never
imports ROS; modules here translate between ROS messages and il_core's numpy observations
and actions. See docs/architecture.md.
"""

from il_core import __version__

__all__ = ["__version__"]
