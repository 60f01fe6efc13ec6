"""Where training and evaluation metrics go: CSV always, TensorBoard by default, W&B on request.

A run directory (``il-core train --out RUN``) holds:

- ``metrics.csv``: long format (``step, split, name, value``), any policy can log any metric;
  the one file every tool can read.
- ``tensorboard/``: event files of the same scalars, tagged ``<split>/<name>`` (``train/loss``,
  ``val/loss``, ``eval/<env>/success_rate``), written with ``torch.utils.tensorboard``
  (``train.tensorboard: false`` turns it off). ``tensorboard --logdir runs/`` compares runs.
- Weights & Biases, when ``train.wandb: true`` and the ``wandb`` package is installed (a clear
  error otherwise): the same scalars and the resolved config, run files under ``RUN/wandb``.

``il-core eval`` of a checkpoint whose run has a ``tensorboard/`` folder adds its results at
the checkpoint's training step, so one board shows the losses and the success rate.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from il_core.config import ConfigError

#: The folder of a run directory holding TensorBoard event files.
TENSORBOARD_DIR = "tensorboard"


class MetricSink(Protocol):
    """Receives scalars: ``write(step, split, {name: value})``, then ``close()``."""

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """Log ``metrics`` of ``split`` at training step ``step``."""

    def close(self) -> None:
        """Flush and release what the sink holds."""


class CSVSink:
    """Long-format CSV (step, split, name, value).

    Args:
        path: The CSV file.
        append: Continue an existing file (a resumed run) instead of starting a new one.
    """

    def __init__(self, path: Path, append: bool = False) -> None:
        new = not (append and path.exists())
        self._f = path.open("a" if append else "w", newline="", encoding="utf-8")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(["step", "split", "name", "value"])

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """Log ``metrics`` of ``split`` at ``step``."""
        for k, v in metrics.items():
            self._w.writerow([step, split, k, f"{v:.6g}"])
        # Flushed per write: a crashed or killed run keeps every metric it logged.
        self._f.flush()

    def close(self) -> None:
        """Flush and close."""
        self._f.close()


class TensorBoardSink:
    """TensorBoard event files (``torch.utils.tensorboard``), one scalar per metric.

    Args:
        log_dir: The event-file folder (``RUN/tensorboard``); a resumed run adds files to it.
    """

    def __init__(self, log_dir: Path) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError(
                "train.tensorboard is true but the 'tensorboard' package is not installed: "
                "pip install tensorboard, or set train.tensorboard: false"
            )
        from torch.utils.tensorboard import SummaryWriter

        self._w = SummaryWriter(log_dir=str(log_dir))

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """Log ``metrics`` of ``split`` at ``step``."""
        for k, v in metrics.items():
            if v is not None and math.isfinite(float(v)):
                self._w.add_scalar(f"{split}/{k}", float(v), step)
        self._w.flush()  # at log_every, not per step: cheap, and a killed run keeps it

    def close(self) -> None:
        """Flush and close."""
        self._w.close()


class WandbSink:
    """A Weights & Biases run with the same scalars and the resolved config.

    Args:
        run_dir: The run directory (W&B writes its files under ``run_dir/wandb``).
        project: W&B project name.
        config: The resolved training config, stored with the run.
    """

    def __init__(self, run_dir: Path, project: str, config: Mapping[str, Any]) -> None:
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError(
                "train.wandb is true but the 'wandb' package is not installed: "
                "pip install wandb (and wandb login, or WANDB_MODE=offline)"
            )
        import wandb

        self._run = wandb.init(
            project=project, dir=str(run_dir), name=run_dir.name, config=dict(config)
        )

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """Log ``metrics`` of ``split`` at ``step``."""
        self._run.log({f"{split}/{k}": float(v) for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        """Flush and close."""
        self._run.finish()


class MetricsLog:
    """Fans each ``write`` out to every sink.

    Args:
        sinks: The sinks, written in order.
    """

    def __init__(self, sinks: list[MetricSink]) -> None:
        self.sinks = sinks

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """Log ``metrics`` of ``split`` (``train``, ``val``, ``eval/<env>``) at ``step``."""
        for s in self.sinks:
            s.write(step, split, metrics)

    def close(self) -> None:
        """Close every sink (files flushed, W&B run finished)."""
        for s in self.sinks:
            s.close()


def open_run_log(
    run_dir: Path,
    *,
    tensorboard: bool,
    wandb: bool,
    wandb_project: str,
    config: Mapping[str, Any],
    append: bool,
) -> MetricsLog:
    """The metrics log of a training run in ``run_dir`` (created by the caller).

    Args:
        run_dir: The run directory.
        tensorboard: Also write ``run_dir/tensorboard`` event files.
        wandb: Also log to Weights & Biases.
        wandb_project: W&B project name.
        config: The resolved config (W&B stores it with the run).
        append: A resumed run: the CSV continues.

    Raises:
        ConfigError: A requested sink's package is not installed.
    """
    sinks: list[MetricSink] = [CSVSink(run_dir / "metrics.csv", append=append)]
    if tensorboard:
        sinks.append(TensorBoardSink(run_dir / TENSORBOARD_DIR))
    if wandb:
        sinks.append(WandbSink(run_dir, wandb_project, config))
    return MetricsLog(sinks)


def log_evaluation(checkpoint: Path, step: int, env_id: str, result: Mapping[str, Any]) -> bool:
    """Add an evaluation's numbers to the TensorBoard log of the checkpoint's run.

    Args:
        checkpoint: The evaluated ``policy.pt``; its folder is the run directory.
        step: The checkpoint's training step (the x-axis beside the losses).
        env_id: The environment, in the tag (``eval/il_ros/PointReach-v0/success_rate``).
        result: :func:`il_core.evaluate.evaluate`'s result; its numeric entries are logged.

    Returns:
        Whether anything was written (False when the run has no ``tensorboard/`` folder or
        the package is not installed).
    """
    log_dir = checkpoint.parent / TENSORBOARD_DIR
    if not log_dir.is_dir() or importlib.util.find_spec("tensorboard") is None:
        return False
    keys = ("success_rate", "mean_return", "std_return", "mean_length")
    metrics = {k: float(result[k]) for k in keys if isinstance(result.get(k), int | float)}
    sink = TensorBoardSink(log_dir)
    try:
        sink.write(step, f"eval/{env_id}", metrics)
    finally:
        sink.close()
    return True
