"""`proctor train`: the default trainer the operator runs when an Experiment gives no command.

Every option can come from the environment the operator sets on the training pod (PROCTOR_*), so
the Job's command stays `proctor train`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from proctor.api.manifests import ManifestError, load_manifests
from proctor.api.redaction import known_secrets, redact
from proctor.api.v1alpha1 import Experiment, duration_seconds


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = os.environ.get
    train = commands.add_parser("train", help="train user code under a budget, with checkpoints")
    train.add_argument("--manifest", type=Path, help="an Experiment: code, budget and checkpoints")
    train.add_argument("--entrypoint", default=env("PROCTOR_ENTRYPOINT"))
    train.add_argument("--config", default=env("PROCTOR_CONFIG"), help="JSON object for setup")
    train.add_argument("--path", type=Path, action="append", default=[])
    train.add_argument("--max-steps", type=int, default=_int(env("PROCTOR_MAX_STEPS")))
    train.add_argument("--max-duration", default=env("PROCTOR_MAX_DURATION"), help="like 2h30m")
    train.add_argument("--checkpoint-uri", default=env("PROCTOR_CHECKPOINT_URI"))
    train.add_argument(
        "--checkpoint-every-steps", type=int, default=_int(env("PROCTOR_CHECKPOINT_EVERY_STEPS"))
    )
    train.add_argument("--checkpoint-every", default=env("PROCTOR_CHECKPOINT_EVERY", "30m"))
    train.add_argument("--keep-last", type=int, default=_int(env("PROCTOR_KEEP_LAST")) or 3)
    train.add_argument(
        "--eval-every-steps", type=int, default=_int(env("PROCTOR_EVAL_EVERY_STEPS"))
    )
    train.add_argument("--experiment", default=env("PROCTOR_EXPERIMENT", "local"))
    train.add_argument("--namespace", default=env("PROCTOR_NAMESPACE", "default"))
    train.add_argument("--metrics-port", type=int, default=_int(env("PROCTOR_METRICS_PORT")))
    train.add_argument("--metrics-file", type=Path, default=env("PROCTOR_METRICS_FILE"))
    train.add_argument("--log-every", type=int, default=10)
    train.add_argument("--device", default=env("PROCTOR_DEVICE"))
    train.add_argument(
        "--termination-log",
        type=Path,
        default=env("PROCTOR_TERMINATION_LOG"),
        help="write the outcome here as JSON (a pod's terminationMessagePath): "
        "under torchrun any failing rank makes the exit code 1, this keeps which",
    )
    train.set_defaults(run=_run)


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _run(args: argparse.Namespace) -> int:
    import torch

    from proctor.pyramid.contract import ContractError, factory
    from proctor.train.telemetry import Telemetry
    from proctor.train.trainer import ExitCode, TrainingPlan, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        entrypoint, config = _code(args)
        plan = TrainingPlan(
            max_steps=args.max_steps,
            max_seconds=duration_seconds(args.max_duration) if args.max_duration else None,
            checkpoint_uri=args.checkpoint_uri,
            checkpoint_every_steps=args.checkpoint_every_steps,
            checkpoint_every_seconds=duration_seconds(args.checkpoint_every),
            keep_last=args.keep_last,
            eval_every_steps=args.eval_every_steps,
        )
        make = factory(entrypoint, config, args.path)
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (ContractError, ManifestError, ValueError, OSError, RuntimeError) as exc:
        print(f"proctor train: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_CONFIG)
    port, metrics_file = args.metrics_port, args.metrics_file
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank reports its own metrics
        rank, local_rank = os.environ.get("RANK", "0"), int(os.environ.get("LOCAL_RANK", "0"))
        port = port + local_rank if port is not None else None
        if metrics_file is not None:
            name = f"{metrics_file.stem}.rank{rank}{metrics_file.suffix}"
            metrics_file = metrics_file.with_name(name)
    with Telemetry(
        experiment=args.experiment,
        namespace=args.namespace,
        port=port,
        metrics_file=metrics_file,
        log_every=args.log_every,
    ) as telemetry:
        result = train(make, plan, telemetry, device)
    # The message quotes the user's exception, and the operator copies it into status and
    # Events: cut the secrets this process knows (PROCTOR_SECRET_ENV names the Secret-held ones).
    message = redact(result.message, known_secrets(os.environ))
    if args.termination_log is not None and os.environ.get("RANK", "0") == "0":
        args.termination_log.parent.mkdir(parents=True, exist_ok=True)
        args.termination_log.write_text(
            json.dumps(
                {
                    "exitCode": int(result.exit_code),
                    "outcome": result.exit_code.name.lower(),
                    "step": result.step,
                    "resumedFrom": result.resumed_from,
                    "message": message[:3000],
                }
            )
        )
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
    print(
        f"proctor train: {result.exit_code.name.lower()} at step {result.step}{resumed}: {message}",
        file=sys.stderr if result.exit_code else sys.stdout,
    )
    # maxDuration is a budget, not a failure: the process exits 0 so the Job completes (and
    # torchrun, which turns any non-zero rank into 1, cannot make it look like a crash); the
    # outcome stays in the termination message.
    if result.exit_code == ExitCode.BUDGET_EXHAUSTED:
        return 0
    return int(result.exit_code)


def _code(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    entrypoint, config = args.entrypoint, {}
    if args.manifest is not None:
        experiments = [r for r in load_manifests(args.manifest) if isinstance(r, Experiment)]
        if not experiments:
            raise ValueError(f"{args.manifest} holds no Experiment")
        spec = experiments[0].spec
        entrypoint = entrypoint or spec.code.entrypoint
        config = dict(spec.code.config)
        args.max_steps = args.max_steps or spec.training.budget.max_steps
        args.max_duration = args.max_duration or spec.training.budget.max_duration
        if spec.training.checkpoint is not None:
            args.checkpoint_uri = args.checkpoint_uri or spec.training.checkpoint.uri
            args.checkpoint_every_steps = (
                args.checkpoint_every_steps or spec.training.checkpoint.every_steps
            )
            args.keep_last = spec.training.checkpoint.keep_last
    if not entrypoint:
        raise ValueError("give --entrypoint package.module:setup or --manifest FILE")
    if args.config:
        parsed = yaml.safe_load(args.config)
        if not isinstance(parsed, dict):
            raise ValueError("--config must be a JSON object")
        config = parsed
    return entrypoint, config
