"""The lifecycle skeleton the inference and DAgger nodes share.

The pattern of ros2/demos ``lifecycle_py/talker.py``: the constructor declares parameters
and makes only what lives as long as the process (``~/status``); ``on_configure`` makes the
robot I/O (an :class:`~il_ros.inputs.ObservationInputs`, a :class:`~il_ros.wiring.TopicWatch`,
the command publisher and whatever else it appends to ``_configured``); ``on_activate`` starts
the control timer; ``on_deactivate`` stops it and commands the safe stop; ``on_cleanup`` and
``on_shutdown`` destroy everything configure made, so configure -> cleanup -> configure
leaves exactly one of each (``tests/test_lifecycle.py`` counts them). Ctrl-C goes through
:meth:`ManagedLifecycleNode.shutdown`, the same path as the shutdown transition.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from il_ros.common import destroy_entities
from il_ros.inputs import ObservationInputs
from il_ros.wiring import TopicWatch


class ManagedLifecycleNode(LifecycleNode):
    """A lifecycle node that makes its entities in configure and destroys them all after.

    Subclasses implement ``on_configure`` (filling :attr:`inputs`, :attr:`watch`,
    :attr:`cmd_pub` and :attr:`_configured`), ``on_activate``, :meth:`_halt` and
    :meth:`_release_owned`; they call :meth:`_schedule_auto_activate` at the end of their
    constructor, once the ``auto_activate`` parameter is declared.
    """

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.inputs: ObservationInputs | None = None
        self.watch: TopicWatch | None = None
        self.cmd_pub: Any = None
        # Publishers, subscriptions, services and timers configure made beyond the inputs.
        self._configured: list[Any] = []
        self._auto: Any = None

    # -- what a subclass provides ----------------------------------------------------------

    @abstractmethod
    def _halt(self, reason: str, flush: bool = False) -> None:
        """Stop the control timer and publish the safe command (nothing if not configured).

        Args:
            reason: ``deactivated`` or ``shutdown``, for the log and ``~/status``.
            flush: Return only once reliable subscribers acknowledged the safe command.
        """

    @abstractmethod
    def _release_owned(self) -> None:
        """Release what configure made besides the I/O: a policy worker, an episode session."""

    # -- transitions -------------------------------------------------------------------------

    def _schedule_auto_activate(self) -> None:
        """Configure and activate from the executor once spinning, if ``auto_activate``."""
        if self.get_parameter("auto_activate").value:
            self._auto = self.create_timer(0.0, self._auto_activate)

    def _auto_activate(self) -> None:
        self.destroy_timer(self._auto)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the control timer and command the safe stop."""
        self._halt("deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything configure made."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Command the safe stop on the way out, then release what configure made."""
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        """Safe stop, then release what configure made (the shutdown transition and Ctrl-C).

        The safe command is delivered before this returns.
        """
        self._halt("shutdown", flush=True)
        self._release()

    def _release(self) -> None:
        self._release_owned()
        if self.inputs is not None:
            self.inputs.destroy()
        if self.watch is not None:
            self.watch.destroy()
        destroy_entities(self, self._configured)
        self.inputs = self.watch = self.cmd_pub = None
