"""il_core: the framework-free imitation-learning library of il_ros (numpy in, numpy out).

Never imports ROS. See docs/architecture.md for how data flows from dataset to checkpoint.
"""

__version__ = "0.1.0"
