"""`proctor watchdog`: the sidecar of every training pod (configured by the operator through
PROCTOR_* variables; see proctor.watchdog.runner.WatchdogConfig).

PROCTOR_UPLOAD_RETRY_SECONDS (default 5) is the first pause before a bundle that could not be
uploaded is tried again; each failure doubles it, up to 5 minutes (proctor.watchdog.spool)."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "watchdog", help="watch a training run beside it and write recovery bundles (a sidecar)"
    )
    run.add_argument(
        "--once", action="store_true", help="check once, report what is found, and exit"
    )
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from proctor.watchdog.runner import Watchdog, WatchdogConfig, run_until_signalled

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = WatchdogConfig.from_env()
        retry = float(os.environ.get("PROCTOR_UPLOAD_RETRY_SECONDS") or 5.0)
    except ValueError as exc:
        print(f"proctor watchdog: bad configuration: {exc}", file=sys.stderr)
        return 2
    watchdog = Watchdog(config, _kube(), upload_retry_seconds=retry)
    # The spool outlives a restart of this container: what it already reported stays reported.
    logging.getLogger("proctor.watchdog").info(
        "watching %s/%s; %d incident(s) already reported%s",
        config.namespace,
        config.experiment,
        len(watchdog.reported),
        f": {', '.join(sorted(watchdog.reported))}" if watchdog.reported else "",
    )
    if args.once:
        for finding in watchdog.check():
            print(f"{finding.kind.value} ({finding.severity.value}): {finding.message}")
        return 0
    return run_until_signalled(watchdog)


def _kube() -> object | None:
    """A read-only client when credentials exist (in a pod, or a kubeconfig); else None, and the
    watchdog judges from the trainer's metrics alone."""
    try:
        from proctor.kube import KubeClient

        return KubeClient.from_environment(component="proctor-watchdog")
    except Exception as exc:
        logging.getLogger(__name__).warning(
            "no Kubernetes access (%s): pod state and Events off", exc
        )
        return None
