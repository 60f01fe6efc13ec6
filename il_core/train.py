"""Training: one loop for every registered policy, on one CPU/GPU or under ``torchrun``.

Configuration is a YAML file with two sections, each validated by a dataclass (unknown keys
are errors), plus an optional ``augment:`` section (:class:`il_core.augment.AugmentConfig`:
side-view label correction and image augmentation; absent, training is unchanged)::

    policy:            # the policy's own config class, plus its registered name
      name: bc
      hidden_dims: [64, 64]
    train:             # TrainConfig below
      steps: 3000
      batch_size: 256

Batches are drawn without replacement per epoch from a permutation that depends only on
``(seed, epoch, rank)``, so a run is reproducible on CPU and a resumed run continues with
exactly the batches the uninterrupted run would have seen.

At the sizes users train (images, CUDA): ``train.num_workers > 0`` builds the window batches
in ``DataLoader`` worker processes (each step's batch is still a function of
``(seed, rank, step)`` only, so the batches, and on CPU the trained weights, are the same as
with ``num_workers: 0``), pinned for asynchronous host-to-device copies; ``train.precision:
bf16`` runs the forward pass under CUDA bfloat16 autocast; ``train.compile`` wraps the model
in ``torch.compile``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from torch import nn

import il_core
from il_core.augment import AugmentConfig, Augmenter
from il_core.batch import numpy_to_tensors, to_torch
from il_core.checkpoint import read_checkpoint, save_checkpoint
from il_core.config import ConfigError, from_dict, merge, to_dict
from il_core.data import EpisodeDataset
from il_core.metrics_log import open_run_log
from il_core.policies import Policy, make_config, make_policy

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings (the ``train:`` section of a training config).

    Attributes:
        steps: Number of optimiser steps.
        batch_size: Global batch size (split evenly across ``torchrun`` processes).
        lr: Adam(W) learning rate.
        weight_decay: AdamW weight decay.
        lr_schedule: ``constant`` or ``cosine`` decay to 10% of ``lr``, after warm-up.
        warmup_steps: Linear warm-up steps.
        grad_clip: Gradient-norm clip (0 disables).
        val_fraction: Fraction of episodes held out for validation (at least one when > 0
            and the data has two or more episodes).
        val_every: Validation period in steps (0 disables periodic validation).
        log_every: Metric logging period in steps.
        checkpoint_every: Period of resumable ``last.pt`` checkpoints (0: only at the end).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        num_threads: torch intra-op threads (0 keeps torch's default).
        tensorboard: Also write the metrics as TensorBoard event files in ``out/tensorboard``
            (:mod:`il_core.metrics_log`).
        wandb: Also log to Weights & Biases (needs the ``wandb`` package).
        wandb_project: The W&B project of the run.
        precision: ``fp32``, or ``bf16``: the forward pass (and so the loss) under
            ``torch.autocast("cuda", torch.bfloat16)``; weights, gradients and optimiser state
            stay float32. CUDA only (refused on CPU, where bfloat16 autocast is not checked
            against float32 training here).
        compile: Wrap the model in ``torch.compile`` (default mode). The first steps are
            slow while it compiles; checkpoints hold the plain module's weights.
        num_workers: ``DataLoader`` worker processes that build the window batches (frame
            reads, image decoding, augmentation). 0 builds them in the training process, as
            before. Any value gives the same batches for the same seed.
        prefetch_factor: Batches each worker prepares ahead (``num_workers > 0`` only).
    """

    steps: int = field(default=3000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=256, metadata={"help": "global batch size"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    lr_schedule: Literal["constant", "cosine"] = field(
        default="constant", metadata={"help": "constant | cosine"}
    )
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    grad_clip: float = field(default=10.0, metadata={"help": "grad-norm clip, 0 disables"})
    val_fraction: float = field(default=0.1, metadata={"help": "episodes held out, 0..0.9"})
    val_every: int = field(default=500, metadata={"help": "validation period, 0 disables"})
    log_every: int = field(default=100, metadata={"help": "metric logging period"})
    checkpoint_every: int = field(default=0, metadata={"help": "resumable checkpoint period"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:N]"})
    num_threads: int = field(default=0, metadata={"help": "torch threads, 0 = default"})
    tensorboard: bool = field(default=True, metadata={"help": "TensorBoard event files"})
    wandb: bool = field(default=False, metadata={"help": "log to Weights & Biases"})
    wandb_project: str = field(default="il_ros", metadata={"help": "W&B project"})
    precision: Literal["fp32", "bf16"] = field(
        default="fp32", metadata={"help": "fp32 | bf16 (CUDA autocast)"}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers, 0 = in-process"})
    prefetch_factor: int = field(default=2, metadata={"help": "batches prefetched per worker"})

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.grad_clip >= 0, "grad_clip must be >= 0"),
            (0.0 <= self.val_fraction <= 0.9, "val_fraction must be in [0, 0.9]"),
            (self.val_every >= 0 and self.log_every >= 1, "val_every >= 0, log_every >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.num_threads >= 0, "num_threads must be >= 0"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.prefetch_factor >= 1, "prefetch_factor must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


def resolve_config(
    raw: dict[str, Any], policy_name: str | None = None, where: str = "config"
) -> tuple[str, Any, TrainConfig]:
    """Validate a raw ``{policy: {...}, train: {...}}`` dict.

    Args:
        raw: Merged YAML and ``--set`` overrides.
        policy_name: ``--policy`` from the command line; overrides ``policy.name``.
        where: File name for error messages.

    Returns:
        ``(policy_name, policy_config, train_config)``.

    Raises:
        ConfigError: naming the file and key.
    """
    unknown = sorted(set(raw) - {"policy", "train", "augment"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level keys {unknown}; allowed: policy, train, augment"
        )
    pol = dict(raw.get("policy") or {})
    name = policy_name or pol.pop("name", None) or "bc"
    pol.pop("name", None)
    policy_cfg = make_config(name, pol, f"{where}: policy")
    train_cfg = from_dict(TrainConfig, raw.get("train") or {}, f"{where}: train")
    return name, policy_cfg, train_cfg


def resolve_augment(raw: dict[str, Any], where: str = "config") -> AugmentConfig | None:
    """Validate the optional ``augment:`` section (None when absent or empty).

    Raises:
        ConfigError: naming the file and key.
    """
    section = raw.get("augment")
    if not section:
        return None
    return from_dict(AugmentConfig, section, f"{where}: augment")


@dataclass
class _Dist:
    """torchrun process-group facts (world 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_pref: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_pref != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(rank, world, local)


def _select_device(pref: str, dist_info: _Dist) -> torch.device:
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if pref in ("auto", "cuda"):
        return torch.device("cuda", dist_info.local_rank)
    if not torch.cuda.is_available():
        raise ConfigError(f"train.device={pref!r} but CUDA is not available")
    return torch.device(pref)


def split_episodes(
    num_episodes: int, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split episode indices into train and validation sets, seeded.

    Returns:
        ``(train_episodes, val_episodes)``; validation is empty when ``val_fraction`` is 0
        or there is a single episode.
    """
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = 0
    if val_fraction > 0 and num_episodes >= 2:
        n_val = min(num_episodes - 1, max(1, round(val_fraction * num_episodes)))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


class _BatchSampler:
    """Epoch permutations depending only on (seed, epoch, rank): resumable by step number."""

    def __init__(self, indices: np.ndarray, batch: int, seed: int, rank: int, world: int):
        self.indices, self.batch, self.seed = indices, batch, seed
        self.rank, self.world = rank, world
        self.per_epoch = max(1, len(indices) // (batch * world))
        self._epoch, self._perm = -1, indices

    def __call__(self, step: int) -> np.ndarray:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            perm = self.indices[rng.permutation(len(self.indices))]
            if len(perm) < self.batch * self.world:  # tiny data: sample with repetition
                perm = np.resize(perm, self.batch * self.world)
            self._epoch, self._perm = epoch, perm
        start = (pos * self.world + self.rank) * self.batch
        return self._perm[start : start + self.batch]


class _WindowBatches(torch.utils.data.IterableDataset):
    """The training batches of steps ``start..steps-1``, built in ``DataLoader`` workers.

    Worker ``w`` of ``n`` builds steps ``start + w, start + w + n, ...``; the loader takes
    one batch from each worker in turn, so the training loop receives them in step order.
    Each batch depends only on ``(seed, rank, step)`` (the sampler's epoch permutation and
    the augmenter's generator), never on which worker built it. The dataset is pickled into
    each worker (its on-disk frame reader reopens the files there).
    """

    def __init__(
        self,
        dataset: EpisodeDataset,
        sampler: _BatchSampler,
        history: int,
        horizon: int,
        augmenter: Augmenter | None,
        start: int,
        steps: int,
    ) -> None:
        super().__init__()
        self.dataset, self.sampler, self.augmenter = dataset, sampler, augmenter
        self.history, self.horizon, self.start, self.steps = history, horizon, start, steps

    def batch(self, step: int) -> dict[str, Any]:
        """The numpy window batch of ``step`` (what each ``DataLoader`` worker builds)."""
        window = self.dataset.window(self.sampler(step), self.history, self.horizon)
        if self.augmenter is not None:
            window = self.augmenter.train_batch(window, step)
        return window

    def chunk(self, first: int, count: int) -> tuple[dict[str, Any], list[int]]:
        """The unaugmented windows of steps ``first .. first + count - 1``, in one gather.

        ``window`` gathers each sample independently, so the i-th block of ``sizes[i]`` rows
        of the result is exactly ``dataset.window(sampler(first + i))``.

        Returns:
            ``(windows, sizes)``: the windows of all ``count`` batches stacked along the
            batch axis (``(sum(sizes), ...)`` per array), and the size of each batch.
        """
        idx = [self.sampler(s) for s in range(first, first + count)]
        window = self.dataset.window(np.concatenate(idx), self.history, self.horizon)
        return window, [len(i) for i in idx]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        wid, n = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + wid, self.steps, n):
            yield self.batch(step)


#: Bytes of window arrays gathered at once by :class:`_ChunkedBatches`: a few MiB of host
#: (and device) memory, enough for 64 steps of vector batches; batches of images (MiB each)
#: are still gathered one step at a time.
_CHUNK_BYTES = 4 << 20
#: At most this many steps per chunk: beyond it the per-step saving is negligible.
_MAX_CHUNK_STEPS = 64


def _nbytes(tree: Any) -> int:
    """Total bytes of the arrays in a (nested) window dict."""
    if isinstance(tree, dict):
        return sum(_nbytes(v) for v in tree.values())
    return int(tree.nbytes) if isinstance(tree, (np.ndarray, torch.Tensor)) else 0


def _split(tree: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """A (nested) window dict of stacked batches -> one dict per batch, of views (no copy).

    Args:
        tree: Arrays (numpy or torch) of ``sum(sizes)`` rows, nested in dicts.
        sizes: Rows of each batch, in order.

    Returns:
        ``len(sizes)`` dicts of the same structure, batch ``i`` holding its ``sizes[i]`` rows.
    """
    parts: dict[str, list[Any]] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            parts[key] = _split(value, sizes)
        elif isinstance(value, torch.Tensor):
            # One call for all the views: slicing tensors one at a time costs microseconds each.
            parts[key] = list(value.split(sizes))
        else:
            parts[key] = np.split(value, np.cumsum(sizes[:-1]))
    return [{key: views[i] for key, views in parts.items()} for i in range(len(sizes))]


class _ChunkedBatches:
    """The in-process training batches, as tensors on the device, gathered chunk-wise.

    A training step of a small MLP takes well under a millisecond, so building its batch
    one step at a time (an ``EpisodeDataset.window`` call, a dozen numpy gathers and
    ``from_numpy`` conversions, a host-to-device copy per array) costs as much as the step.
    This gathers the windows of up to :data:`_MAX_CHUNK_STEPS` consecutive steps (at most
    :data:`_CHUNK_BYTES`) in one ``window`` call, converts and moves them to the device
    once, and hands out each step's rows as views. Each step's batch is the same, value for
    value, as :meth:`_WindowBatches.batch` of that step (``window`` is a per-row gather);
    the first chunk is a single step, which sizes the others.

    With an augmenter, each step's numpy rows are augmented (its draws depend on the step)
    before their conversion, as in the per-step path.
    """

    def __init__(self, batches: _WindowBatches, device: torch.device, pin_memory: bool) -> None:
        self.batches, self.device, self.pin = batches, device, pin_memory
        self._first = batches.start  # the chunk holds the batches of steps first, first + 1, ...
        self._chunk: list[dict[str, Any]] = []
        self._steps_per_chunk = 1  # until the first chunk has been measured
        self._sized = False

    def _fill(self, step: int) -> None:
        b = self.batches
        count = max(1, min(self._steps_per_chunk, b.steps - step))
        window, sizes = b.chunk(step, count)
        if not self._sized:  # the first chunk (one step) sizes the others
            per_step = max(1, _nbytes(window) // count)
            self._steps_per_chunk = max(1, min(_MAX_CHUNK_STEPS, _CHUNK_BYTES // per_step))
            self._sized = True
        # Without an augmenter, convert (and copy to the device) the whole chunk at once.
        if b.augmenter is None:
            window = to_torch(window, self.device, pin_memory=self.pin)
        self._chunk = _split(window, sizes)
        self._first = step

    def __call__(self, step: int) -> dict[str, Any]:
        """The training batch of ``step`` (tensors on the device), same as the per-step one.

        Steps are read in increasing order (the training loop); any other order rebuilds.
        """
        i = step - self._first
        if not 0 <= i < len(self._chunk):
            self._fill(step)
            i = 0
        rows = self._chunk[i]
        if self.batches.augmenter is None:
            return rows
        return to_torch(
            self.batches.augmenter.train_batch(rows, step), self.device, pin_memory=self.pin
        )


def _batch_loader(
    batches: _WindowBatches, cfg: TrainConfig, device: torch.device
) -> Iterator[dict[str, Any]]:
    """Worker-built batches as CPU tensors (pinned when training on CUDA), in step order."""
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,  # each item is already a whole batch
        num_workers=cfg.num_workers,
        collate_fn=numpy_to_tensors,
        pin_memory=device.type == "cuda",
        prefetch_factor=cfg.prefetch_factor,
        persistent_workers=False,
        # Its own generator: the loader's base seed must not consume torch's global RNG,
        # which the policy's forward pass draws from (diffusion noise, dropout).
        generator=torch.Generator().manual_seed(0),
    )
    return iter(loader)


def _autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The forward pass's autocast context: CUDA bfloat16 for ``bf16``, else none."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _lr_factor(cfg: TrainConfig, step: int) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return 1.0


@torch.no_grad()
def evaluate_loss(
    policy: Policy,
    dataset: EpisodeDataset,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    max_samples: int = 20000,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Mean of the policy's logged metrics over (up to ``max_samples``) windows.

    ``transform`` maps each numpy window batch before the policy sees it (the validation
    transform of :class:`il_core.augment.Augmenter`: centre camera only, no augmentation).
    """
    was_training = policy.training
    policy.eval()
    idx = indices[:: max(1, len(indices) // max_samples)]
    totals: dict[str, float] = {}
    n = 0
    for s in range(0, len(idx), batch_size):
        b = idx[s : s + batch_size]
        window = dataset.window(b, policy.n_obs_steps, policy.horizon)
        batch = to_torch(window if transform is None else transform(window), device)
        _, logs = policy(batch)
        for k, v in logs.items():
            totals[k] = totals.get(k, 0.0) + v * len(b)
        n += len(b)
    policy.train(was_training)
    return {k: v / max(1, n) for k, v in totals.items()}


def train(
    data: Sequence[str | Path],
    out: str | Path,
    raw_config: dict[str, Any] | None = None,
    *,
    policy_name: str | None = None,
    seed: int = 0,
    resume: str | Path | None = None,
    progress: bool | None = None,
    config_where: str = "config",
) -> dict[str, Any]:
    """Train a policy on one or more datasets and write ``out/policy.pt``.

    Args:
        data: Dataset directories (several are aggregated; specs must match).
        out: Output directory: ``policy.pt`` (final), ``last.pt`` (resumable),
            ``metrics.csv``, ``tensorboard/`` (unless ``train.tensorboard: false``),
            ``config.yaml`` (resolved config).
        raw_config: ``{policy: {...}, train: {...}}`` (YAML merged with ``--set``).
        policy_name: Overrides ``policy.name``.
        seed: Seeds weights, the split and batch order.
        resume: A ``last.pt``/``policy.pt`` to continue from (weights, optimiser, step).
        progress: tqdm bar; ``None`` shows it only on a terminal.
        config_where: Name of the config source for error messages.

    Returns:
        Summary: ``steps``, ``train_loss``, ``val_loss`` (or None), ``samples_per_s``,
        ``checkpoint``, ``train_episodes``, ``val_episodes``.
    """
    from tqdm.auto import tqdm

    raw = dict(raw_config or {})
    ckpt_state: dict[str, Any] | None = None
    if resume is not None:
        ckpt_state = read_checkpoint(resume)
        saved = ckpt_state.get("train", {}).get("raw_config") or {}
        raw = merge(saved, raw)
        policy_name = policy_name or ckpt_state["policy"]["name"]
    name, policy_cfg, cfg = resolve_config(raw, policy_name, config_where)
    aug_cfg = resolve_augment(raw, config_where)
    dist_info = _init_distributed(cfg.device)
    device = _select_device(cfg.device, dist_info)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.precision == "bf16" and device.type != "cuda":
        raise ConfigError(
            f"train.precision=bf16 needs a CUDA device (got {device}); use fp32 on CPU"
        )
    if cfg.batch_size % dist_info.world:
        raise ConfigError(
            f"train.batch_size={cfg.batch_size} is not divisible by the "
            f"{dist_info.world} torchrun processes"
        )
    torch.manual_seed(seed)

    dataset = EpisodeDataset([Path(d) for d in data])
    train_eps, val_eps = split_episodes(dataset.num_episodes, cfg.val_fraction, seed)
    train_idx = dataset.step_indices(train_eps)
    val_idx = dataset.step_indices(val_eps) if val_eps else np.zeros(0, dtype=np.int64)
    stats = dataset.stats(train_idx)
    policy_spec = dataset.spec
    augmenter = None
    if aug_cfg is not None:
        # Side views: the policy is built for the centre camera only, and its action
        # normalisation for the corrected-label mixture it will be trained on.
        augmenter = Augmenter(aug_cfg, dataset.spec, seed=seed, rank=dist_info.rank)
        policy_spec = augmenter.policy_spec
        stats = augmenter.adjust_stats(stats)
    policy = make_policy(name, policy_cfg, policy_spec, stats).to(device)
    # What the training step calls: the policy, maybe wrapped by DDP and/or torch.compile
    # (typed as a plain callable; only ``model(batch)`` is used).
    model: Callable[..., Any] = policy
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            policy, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        model = torch.compile(model)
    # The parameters, listed once: walking the module tree for them every step (zero_grad,
    # clip_grad_norm_) costs more than the optimiser arithmetic of a small MLP.
    params = list(policy.parameters())
    # The multi-tensor (foreach) AdamW: a few batched kernels per step instead of about ten
    # per parameter tensor. It is PyTorch's default on CUDA, and on CPU it gives the same
    # weights bit for bit (``fused`` would not: it reorders the arithmetic).
    foreach = True if device.type in ("cpu", "cuda") else None
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach)
    start = 0
    if ckpt_state is not None:
        policy.load_state_dict(ckpt_state["state_dict"])
        if "optimizer" in ckpt_state:
            optim.load_state_dict(ckpt_state["optimizer"])
            for g in optim.param_groups:  # a saved group carries its own (older) flag
                g["foreach"] = foreach
        start = int(ckpt_state.get("train", {}).get("step", 0))
        if "torch_rng" in ckpt_state.get("rng", {}):
            torch.set_rng_state(ckpt_state["rng"]["torch_rng"])

    out = Path(out)
    resolved = {"policy": {"name": name, **to_dict(policy_cfg)}, "train": to_dict(cfg)}
    if aug_cfg is not None:
        resolved["augment"] = to_dict(aug_cfg)
    metrics = None
    if dist_info.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        metrics = open_run_log(
            out,
            tensorboard=cfg.tensorboard,
            wandb=cfg.wandb,
            wandb_project=cfg.wandb_project,
            config=resolved,
            append=resume is not None,
        )
    k, h = policy.n_obs_steps, policy.horizon
    # Windows without any expert label (a released deadman in a DAgger round) would add
    # nothing but zero-loss samples to each batch.
    train_idx = dataset.labelled_anchors(train_idx, h)
    val_idx = dataset.labelled_anchors(val_idx, h)
    if train_idx.size == 0:
        raise ConfigError(
            f"{[str(d) for d in data]}: no training step carries an expert label "
            "(extra 'has_expert_label' is 0 everywhere)"
        )
    sampler = _BatchSampler(
        train_idx, cfg.batch_size // dist_info.world, seed, dist_info.rank, dist_info.world
    )

    batches = _WindowBatches(dataset, sampler, k, h, augmenter, start, cfg.steps)
    cuda = device.type == "cuda"
    loader = _batch_loader(batches, cfg, device) if cfg.num_workers > 0 else None
    in_process = _ChunkedBatches(batches, device, pin_memory=cuda)

    def state(step: int, summary: dict[str, Any], with_optim: bool) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "train": {
                "step": step,
                "seed": seed,
                "raw_config": resolved,
                "datasets": [str(Path(d).resolve()) for d in data],
                "train_episodes": len(train_eps),
                "val_episodes": len(val_eps),
                "summary": summary,
                "il_core_version": il_core.__version__,
            },
            "rng": {"torch_rng": torch.get_rng_state()},
        }
        if with_optim:
            extra["optimizer"] = optim.state_dict()
        return extra

    policy.train()
    # tqdm's disable=None shows the bar only on a terminal; other ranks never show one.
    disable = True if not dist_info.main else (None if progress is None else not progress)
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        disable=disable,
        desc=f"train {name}",
        unit="step",
        dynamic_ncols=True,
    )
    running: dict[str, float] = {}
    n_running = 0
    last_val: dict[str, float] = {}
    last_train: dict[str, float] = {}
    train_time = 0.0
    samples = 0
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        for g in optim.param_groups:
            g["lr"] = cfg.lr * _lr_factor(cfg, step)
        if loader is None:
            batch = in_process(step)
        else:
            batch = to_torch(next(loader), device, pin_memory=cuda)
        with _autocast(device, cfg.precision):
            loss, logs = model(batch)
        # optim.zero_grad(set_to_none=True) without its per-step bookkeeping.
        for p in params:
            p.grad = None
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optim.step()
        policy.after_optimizer_step(step + 1)
        samples += cfg.batch_size
        for key, v in logs.items():
            running[key] = running.get(key, 0.0) + v
        n_running += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            train_time += now - t0
            avg = {key: v / n_running for key, v in running.items()}
            avg["lr"] = optim.param_groups[0]["lr"]
            avg["samples_per_s"] = samples / max(train_time, 1e-9)
            if metrics is not None:
                metrics.write(done, "train", avg)
            bar.set_postfix(loss=f"{avg.get('loss', float('nan')):.4g}")
            last_train = avg
            running, n_running = {}, 0
            t0 = time.perf_counter()
        bar.update(1)
        if (
            dist_info.main
            and len(val_idx)
            and cfg.val_every
            and (done % cfg.val_every == 0 or done == cfg.steps)
        ):
            t_val = time.perf_counter()
            last_val = evaluate_loss(
                policy,
                dataset,
                val_idx,
                cfg.batch_size,
                device,
                transform=None if augmenter is None else augmenter.eval_batch,
            )
            if metrics is not None:
                metrics.write(done, "val", last_val)
            t0 += time.perf_counter() - t_val  # validation time is not training throughput
        if dist_info.main and cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
            save_checkpoint(out / "last.pt", policy, state(done, {}, with_optim=True))
    bar.close()
    loader = None  # its worker processes have built every step and exit
    summary = {
        "policy": name,
        "steps": cfg.steps,
        "train_loss": last_train.get("loss"),
        "val_loss": last_val.get("loss"),
        "samples_per_s": samples / max(train_time, 1e-9) if samples else None,
        "train_episodes": len(train_eps),
        "val_episodes": len(val_eps),
        "checkpoint": str(out / "policy.pt"),
    }
    if dist_info.main:
        save_checkpoint(out / "policy.pt", policy, state(cfg.steps, summary, with_optim=True))
        if metrics is not None:
            metrics.close()
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return summary


__all__ = [
    "TrainConfig",
    "evaluate_loss",
    "resolve_augment",
    "resolve_config",
    "split_episodes",
    "to_torch",
    "train",
]
