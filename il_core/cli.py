"""The ``il-core`` command line (also ``python -m il_core``): collect, train, eval, export, info.

Also ``view`` (an episode in Rerun), ``import-bag`` (rosbag2 -> dataset), ``export-lerobot``
and ``import-lerobot`` (LeRobot format v3.0).

Every sub-command prints its result as one JSON line on stdout (progress and logs go to
stderr), so scripts can rely on it. Errors in user input exit with status 2 and a message
naming the file, key or flag.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from il_core.config import ConfigError

EXIT_USAGE = 2


def _cmd_collect(args: argparse.Namespace) -> dict[str, Any]:
    from il_core.collect import collect

    return collect(
        args.env,
        args.expert,
        args.episodes,
        args.seed,
        args.out,
        flush_every=args.flush_every,
        successful_only=args.successful_only,
    )


class _HelpConfig(argparse.Action):
    """``il-core train --help-config [POLICY]``: the config keys, then exit (like --help)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from il_core.augment import AugmentConfig
        from il_core.config import describe_config
        from il_core.policies import get_policy_class
        from il_core.train import TrainConfig

        try:
            policy_cls = get_policy_class(str(values))
        except (KeyError, ValueError, ConfigError) as e:
            parser.error(f"--help-config: {e}")
        sections = [
            (f"policy: ({values})", describe_config(policy_cls.config_class, "policy.")),
            ("train:", describe_config(TrainConfig, "train.")),
            ("augment: (optional)", describe_config(AugmentConfig, "augment.")),
        ]
        for title, lines in sections:
            print(title)
            print("\n".join(f"  {line}" for line in lines))
        parser.exit(0)


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from il_core.config import load_config
    from il_core.train import train

    raw, where = load_config(args.config, args.set)
    return train(
        args.data,
        args.out,
        raw,
        policy_name=args.policy,
        seed=args.seed,
        resume=args.resume,
        config_where=where,
    )


def _cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from il_core.evaluate import evaluate

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)

    result = evaluate(
        args.checkpoint,
        args.env,
        args.episodes,
        args.seed,
        video=args.video,
        video_episodes=args.video_episodes,
        plot=args.plot,
        max_steps=args.max_steps,
    )
    if args.tensorboard:
        from il_core.metrics_log import log_evaluation

        ckpt = Path(args.checkpoint)
        step = int(result.get("checkpoint_step") or 0)
        if log_evaluation(ckpt, step, args.env, result):
            result["tensorboard"] = str(ckpt.parent / "tensorboard")
    return result


def _cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from il_core.export import export_checkpoint

    # Tracing and the check run tiny batch-1 models: extra threads only add contention.
    torch.set_num_threads(1)
    return export_checkpoint(
        args.checkpoint, args.out, args.format, check=args.check, seed=args.seed
    )


def dataset_summary(path: Path) -> dict[str, Any]:
    """Summary of a dataset directory: spec, episodes, steps, rates, success."""
    import numpy as np

    from il_core.data import EpisodeDataset

    # Info only reads, never trains: no frame is decoded (nor read).
    ds = EpisodeDataset(path, allow_state_only=True, cache_images=False)
    eps = ds.episodes
    labelled = [e.success for e in eps if e.success is not None]
    rates = [e.measured_rate_hz for e in eps if e.measured_rate_hz]
    return {
        "type": "dataset",
        "path": str(path),
        "episodes": ds.num_episodes,
        "steps": ds.num_steps,
        "duration_s": float(sum(e.duration_s for e in eps)),
        "control_rate_hz": ds.spec.control_rate_hz,
        "measured_rate_hz_median": float(np.median(rates)) if rates else None,
        "success_rate": float(np.mean(labelled)) if labelled else None,
        "recovered_episodes": sum(1 for e in eps if e.recovered),
        "state_only": ds.spec.state_only,
        "spec": ds.spec.to_dict(),
    }


def checkpoint_summary(path: Path) -> dict[str, Any]:
    """Summary of a checkpoint: policy, config, spec, training step and metrics."""
    from il_core.checkpoint import policy_from_checkpoint_dict, read_checkpoint

    data = read_checkpoint(path)
    policy = policy_from_checkpoint_dict(data, str(path))
    train = data.get("train", {})
    return {
        "type": "checkpoint",
        "path": str(path),
        "policy": data["policy"]["name"],
        "parameters": sum(p.numel() for p in policy.parameters()),
        "il_core_version": data.get("il_core_version"),
        "step": train.get("step"),
        "summary": train.get("summary"),
        "datasets": train.get("datasets"),
        "config": data["policy"]["config"],
        "spec": data["spec"],
    }


def _cmd_export_lerobot(args: argparse.Namespace) -> dict[str, Any]:
    from il_core.lerobot_format import export_lerobot

    return export_lerobot(args.data, args.out, task=args.task, vcodec=args.vcodec, crf=args.crf)


def _cmd_import_lerobot(args: argparse.Namespace) -> dict[str, Any]:
    from il_core.lerobot_format import import_lerobot

    return import_lerobot(args.src, args.out)


def _cmd_view(args: argparse.Namespace) -> dict[str, Any]:
    from il_core.view import view_episode

    return view_episode(args.data, args.episode, args.out, args.spawn)


def _cmd_import_bag(args: argparse.Namespace) -> dict[str, Any]:
    from il_core.bag_import import import_bags

    return import_bags(
        args.bags,
        args.mapping,
        args.out,
        split_on_episode_topic=args.split_on_episode_topic,
        split_gap_s=args.split_gap,
        rate_hz=args.rate,
        action_max_age_s=args.action_max_age,
        episode_topic=args.episode_topic,
        deadman_topic=args.deadman_topic,
        trigger=args.trigger,
    )


def _cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.path)
    if path.is_dir():
        return dataset_summary(path)
    if path.is_file():
        return checkpoint_summary(path)
    raise FileNotFoundError(f"{path}: no such dataset directory or checkpoint file")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = argparse.ArgumentParser(
        prog="il-core",
        description="Imitation learning: collect, train, evaluate, export, inspect.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="record scripted-expert episodes into a dataset")
    c.add_argument("--env", required=True, help="gymnasium env id, e.g. MountainCar-v0")
    c.add_argument(
        "--expert",
        default="auto",
        help="registered expert name, 'auto' (the env's default) or module:callable",
    )
    c.add_argument("--episodes", type=int, required=True, help="number of episodes")
    c.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    c.add_argument("--out", required=True, help="dataset directory (created or appended)")
    c.add_argument("--flush-every", type=int, default=50, help="steps between flushes")
    c.add_argument(
        "--successful-only",
        action="store_true",
        help="discard episodes the env does not label a success and try the next seed, "
        "until EPISODES successful ones are stored (at most 10 x EPISODES tries)",
    )
    c.set_defaults(func=_cmd_collect)

    t = sub.add_parser("train", help="train a policy; writes OUT/policy.pt")
    t.add_argument(
        "--data",
        action="append",
        required=True,
        help="dataset directory; repeat to aggregate several",
    )
    t.add_argument("--policy", default=None, help="policy name (default: config or 'bc')")
    t.add_argument("--config", default=None, help="YAML with policy: and train: sections")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.steps=2000; repeatable",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--resume", default=None, help="checkpoint to resume from (last.pt)")
    t.add_argument(
        "--help-config",
        nargs="?",
        const="bc",
        metavar="POLICY",
        action=_HelpConfig,
        help="print every config key of the policy: (POLICY's, default bc), train: and "
        "augment: sections with its type, default and meaning, and exit",
    )
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="roll a checkpoint out in a gymnasium env")
    e.add_argument("--checkpoint", required=True, help="policy.pt")
    e.add_argument("--env", required=True, help="gymnasium env id")
    e.add_argument("--episodes", type=int, default=50)
    e.add_argument("--seed", type=int, default=1000, help="episode i is reset with seed + i")
    e.add_argument("--video", default=None, help="write a .gif or .mp4 of the first episodes")
    e.add_argument("--video-episodes", type=int, default=1)
    e.add_argument("--plot", default=None, help="write a PNG of per-episode returns")
    e.add_argument("--max-steps", type=int, default=None)
    e.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        help="do not add the results to the TensorBoard log of the checkpoint's run "
        "(written at the checkpoint's step when the run has a tensorboard/ folder)",
    )
    e.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: small policies are fastest single-threaded and "
        "do not slow down when the other core is busy)",
    )
    e.set_defaults(func=_cmd_eval)

    x = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript for robots without torch",
        description="Write an ONNX (.onnx) or TorchScript (.pt, .ts) export of a training "
        "checkpoint; the robot loads either with il_core.runtime.load_runtime_policy.",
    )
    x.add_argument("--checkpoint", required=True, help="policy.pt written by il-core train")
    x.add_argument(
        "--out", required=True, help="destination: FILE.onnx (ONNX) or FILE.pt / FILE.ts"
    )
    x.add_argument(
        "--format",
        choices=["onnx", "torchscript"],
        default=None,
        help="optional; must agree with the suffix of --out, which the robot's loader reads",
    )
    x.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare eager and exported actions on a seeded random observation history "
        "(default: on)",
    )
    x.add_argument("--seed", type=int, default=0, help="seed of the --check history and noise")
    x.set_defaults(func=_cmd_export)

    i = sub.add_parser("info", help="summarise a dataset directory or a checkpoint")
    i.add_argument("path")
    i.set_defaults(func=_cmd_info)

    v = sub.add_parser("view", help="an episode in the Rerun viewer (.rrd file)")
    v.add_argument("data", help="dataset directory")
    v.add_argument("--episode", type=int, default=0, help="episode index (-1: the last)")
    v.add_argument("--out", default=None, help="the .rrd file (default DATA-NAME_episode_N.rrd)")
    v.add_argument(
        "--spawn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="open the viewer (default: where a display is available)",
    )
    v.set_defaults(func=_cmd_view)

    b = sub.add_parser(
        "import-bag",
        help="rosbag2 recordings (MCAP, sqlite3) -> a dataset, as the recorder would record them",
    )
    b.add_argument("bags", nargs="+", metavar="BAG", help="bag directory, .mcap or .db3 file")
    b.add_argument("--mapping", required=True, help="robot mapping YAML (topics <-> keys)")
    b.add_argument("--out", required=True, help="dataset directory (created or appended)")
    b.add_argument(
        "--split-on-episode-topic",
        action="store_true",
        help="episodes follow the recorder's episode commands in the bag "
        "(start/stop/success/failure/discard); default: one bag, one episode",
    )
    b.add_argument(
        "--split-gap",
        type=float,
        default=None,
        metavar="S",
        help="start a new episode where every mapped stream pauses longer than S seconds",
    )
    b.add_argument("--rate", type=float, default=None, help="tick rate (default: the mapping's)")
    b.add_argument(
        "--trigger",
        default=None,
        metavar="KEY",
        help="one step per message of this observation (the recorder's trigger parameter)",
    )
    b.add_argument(
        "--action-max-age",
        type=float,
        default=0.25,
        metavar="S",
        help="a tick is recorded only if the command is at most S old (default 0.25)",
    )
    b.add_argument("--episode-topic", default="/il_ros/episode_control")
    b.add_argument("--deadman-topic", default="/il_ros/deadman")
    b.set_defaults(func=_cmd_import_bag)

    le = sub.add_parser(
        "export-lerobot",
        help="write a dataset in LeRobot's format v3.0 (Parquet + MP4 + meta/)",
        description="Write DATA as a LeRobot v3.0 dataset that LeRobot's LeRobotDataset "
        "opens; see il_core/lerobot_format.py for how the features map.",
    )
    le.add_argument("data", help="dataset directory")
    le.add_argument("--out", required=True, help="LeRobot dataset directory (new or empty)")
    le.add_argument(
        "--task",
        default=None,
        help="task string of every step (default: the spec's task or env_id metadata)",
    )
    le.add_argument(
        "--vcodec",
        choices=["libsvtav1", "h264"],
        default="libsvtav1",
        help="camera video codec (libsvtav1: AV1, LeRobot's default)",
    )
    le.add_argument("--crf", type=int, default=30, help="video quality, lower is better")
    le.set_defaults(func=_cmd_export_lerobot)

    li = sub.add_parser(
        "import-lerobot",
        help="read a LeRobot v3.0 dataset into a dataset",
        description="Convert a LeRobot v3.0 dataset directory into a dataset; the JSON "
        "result lists every LeRobot feature without a counterpart and what was done with it.",
    )
    li.add_argument("src", metavar="DIR", help="LeRobot dataset directory (meta/info.json ...)")
    li.add_argument("--out", required=True, help="dataset directory (new or empty)")
    li.set_defaults(func=_cmd_import_lerobot)

    # Algorithms beyond plain cloning (il_core/algos/*) add their own subcommands.
    from il_core.algos import cli_modules

    for module in cli_modules():
        module.add_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit status."""
    from il_core.checkpoint import CheckpointError
    from il_core.spec import SpecError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from il_core.data import DatasetError
    from il_core.envs import UnknownEnvError
    from il_core.experts import ExpertError
    from il_core.plugins import PluginError
    from il_core.reward import LearnedRewardError
    from il_core.runtime import ExportError

    user_errors: tuple[type[BaseException], ...] = (
        ConfigError,
        CheckpointError,
        SpecError,
        DatasetError,
        UnknownEnvError,
        ExportError,
        FileNotFoundError,
        ExpertError,
        PluginError,
        LearnedRewardError,
    )
    try:
        result = args.func(args)
    except user_errors as e:
        print(f"il-core {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"il-core {args.command}: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
