"""Per-step extras of every recorded dataset, and when a step carries an expert label.

The ROS recorder, the ROS DAgger node and the simulated DAgger collector
(:mod:`il_core.algos.dagger`) write the same extras, defined once here, so that
demonstrations and DAgger rounds from a robot or a simulator aggregate into one training
set (one spec) and their statistics can be computed over all of it.

An action is an *expert label* only where the expert really commanded it. A teleop whose
deadman is released still publishes (zeros, so that a velocity-controlled robot stops), but
those zeros are a safety behaviour, not what the expert would do in that state: steps
without a label are kept for the record (the observation history stays contiguous, the
executed command is known) with ``has_expert_label`` 0, and
:class:`il_core.data.EpisodeDataset` masks their actions out of the training loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from il_core.alignment import AlignedTick

#: Age of each stream's sample at the tick (observation keys in mapping order, then the
#: command), seconds. 0 for a command the recording node made itself (its safe stop).
EXTRA_AGE = "obs_age"
#: Receive time minus header stamp of each of those samples, seconds.
EXTRA_DELAY = "receive_delay"
#: 1 where the expert drove the robot in a DAgger session (always 0 for teleop demos).
EXTRA_INTERVENTION = "is_intervention"
#: 1 where the step's action is an expert label (see the module docstring); 0 masks it.
EXTRA_HAS_LABEL = "has_expert_label"
#: The command actually executed (the policy's, the expert's, or the safe stop).
EXTRA_EXECUTED = "executed_action"


def recording_extras(num_observations: int, action_dim: int) -> dict[str, int]:
    """``{extra name: vector length}`` of a recording with these observations and action.

    Args:
        num_observations: Observation keys recorded (the ages and delays get one more entry,
            for the command).
        action_dim: Length of the executed action vector (1 for a discrete class).
    """
    n = int(num_observations) + 1
    return {
        EXTRA_AGE: n,
        EXTRA_DELAY: n,
        EXTRA_INTERVENTION: 1,
        EXTRA_HAS_LABEL: 1,
        EXTRA_EXECUTED: int(action_dim),
    }


def has_expert_label(expert_fresh: bool, deadman: bool | None) -> bool:
    """Whether the expert's current command is a label of the current step.

    Args:
        expert_fresh: The expert's command is present and no older than its maximum age.
        deadman: The teleop's deadman state, or None when no deadman is in use (nothing
            publishes one: a scripted expert, a leader arm without a pedal). A released
            deadman means the teleop's command is its idle output, not a label.
    """
    return bool(expert_fresh) and deadman is not False


#: The recorder's name of the command stream in its :class:`~il_core.alignment.TickAligner`.
ACTION_STREAM = "action"

_ZERO = np.zeros(1, np.float32)
_ONE = np.ones(1, np.float32)


@dataclass(frozen=True)
class RecordedStep:
    """One demonstration step built from an aligned tick (what the writer's ``add_step`` takes).

    Attributes:
        obs: ``{observation key: value}``, vectors ``(D,)`` float32, images ``(H, W, C)``.
        action: The command at the tick, ``(A,)`` float32.
        timestamp: The tick time, seconds.
        extras: The per-step extras of :func:`recording_extras`.
    """

    obs: dict[str, np.ndarray]
    action: np.ndarray
    timestamp: float
    extras: dict[str, np.ndarray]


def demonstration_step(
    tick: AlignedTick,
    stream_names: Sequence[str],
    deadman: bool | None = None,
    action_stream: str = ACTION_STREAM,
) -> RecordedStep | None:
    """The demonstration step of one recorder tick, or None for a gap.

    The one definition of what a recorded demonstration step is: the live recorder node and
    the bag import (:mod:`il_core.bag_import`) both call it on ticks of the same aligner, so
    a bag and a live recording of the same topics give the same steps.

    Args:
        tick: The aligner's tick (:meth:`~il_core.alignment.TickAligner.sample`).
        stream_names: The aligner's streams in order: observation keys, then the command.
        deadman: The teleop's deadman state, None when no deadman is in use.
        action_stream: Name of the command stream among ``stream_names``.

    Returns:
        None when the tick is incomplete (a stream missing or stale: not recorded, counted as
        a gap by the aligner); else the step, labelled as an expert demonstration unless the
        deadman is released.
    """
    if not tick.complete:
        return None
    obs = {k: tick.values[k] for k in stream_names if k != action_stream}
    ages = np.array([tick.ages[k] for k in stream_names], np.float32)
    delays = np.array([tick.receive_delays[k] for k in stream_names], np.float32)
    action = tick.values[action_stream]
    # The command is fresh (the tick is complete); with the deadman released it is the
    # teleop's idle output, recorded but not a demonstration.
    labelled = has_expert_label(True, deadman)
    extras = {
        EXTRA_AGE: ages,
        EXTRA_DELAY: delays,
        EXTRA_INTERVENTION: _ZERO,
        EXTRA_HAS_LABEL: _ONE if labelled else _ZERO,
        EXTRA_EXECUTED: action,
    }
    return RecordedStep(obs, action, tick.time, extras)
