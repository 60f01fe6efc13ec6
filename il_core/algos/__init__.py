"""Beyond plain cloning: DAgger and expert-gated DAgger, BCO, goal-conditioned BC, GAIL, AIRL.

Each algorithm is a module of this package, usable from Python and from the ``il-core``
command line: a module that defines ``add_cli(subparsers)`` adds its own subcommand
(discovered by :func:`cli_modules`, so algorithms never edit ``il_core/cli.py``). Like the
rest of ``il_core`` they never import ROS.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def cli_modules() -> list[ModuleType]:
    """The modules of this package that add an ``il-core`` subcommand, by name."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_cli"):
            found.append(module)
    return found
