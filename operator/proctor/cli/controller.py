"""`proctor operator`: run the controller (kopf) against the cluster of the kubeconfig, or the
in-cluster service account when it runs in a pod."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "operator", help="run the controller that reconciles Experiments and ValidationPyramids"
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument(
        "--peering",
        default=None,
        help="kopf peering object (needs kopf's peering CRDs): a second operator of the same "
        "peering makes both pause rather than act twice; without it the operator runs standalone",
    )
    run.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL"
    )
    run.add_argument(
        "--metrics-port", type=int, default=9100, help="port of the operator's /metrics (0: off)"
    )
    run.add_argument("--watchdog-image", default=None, help="image of the watchdog sidecar")
    run.add_argument(
        "--bundle-uri", default=None, help="default store for recovery bundles (s3:// or file://)"
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=None,
        help="reconcile unfinished objects at least this often (default 10)",
    )
    run.add_argument(
        "--progress-seconds",
        type=float,
        default=None,
        help="read a training run's metrics at most this often (default 15)",
    )
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    # The handlers read their timing when imported, so flags become PROCTOR_* variables first.
    for flag, variable in (
        ("watchdog_image", "PROCTOR_WATCHDOG_IMAGE"),
        ("bundle_uri", "PROCTOR_BUNDLE_URI"),
        ("resync_seconds", "PROCTOR_RESYNC_SECONDS"),
        ("progress_seconds", "PROCTOR_PROGRESS_SECONDS"),
    ):
        value = getattr(args, flag)
        if value is not None:
            os.environ[variable] = str(value)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # kopf reports every handler run at INFO: one line per watch event
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        from proctor.controller.settings import ControllerSettings

        settings = ControllerSettings.from_env()
    except ValueError as exc:
        print(f"proctor operator: {exc}", file=sys.stderr)
        return 2
    if args.peering:
        problem = _ensure_peering(args.peering)
        if problem:
            print(f"proctor operator: {problem}", file=sys.stderr)
            return 2
    import kopf

    import proctor.controller.handlers  # noqa: F401 (registers the handlers)

    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        clusterwide=args.all_namespaces or not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(settings=settings, metrics_port=args.metrics_port or None),
    )
    return 0


def _ensure_peering(name: str) -> str:
    """Create the ClusterKopfPeering `name` if it is missing; what went wrong, or "".

    kopf announces each operator in that object but never creates it, and without it the guard
    against a second operator is silently off. The operator always peers cluster-wide (see
    proctor.controller.handlers), so one object serves every namespace it watches."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    try:
        client.CustomObjectsApi().create_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", body
        )
    except client.ApiException as exc:
        if exc.status == 409:
            return ""  # it exists: the usual case
        if exc.status == 404:
            return (
                f"--peering={name} needs kopf's CRD clusterkopfpeerings.kopf.dev, which is not "
                "installed: install the chart with crds.install=true, or run without --peering"
            )
        return f"cannot create the peering object {name}: {exc.status} {exc.reason}"
    return ""
