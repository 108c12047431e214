"""`proctor local run|up|down`: experiments on this machine, start to finish, in one command.

`run` starts the emulated cluster in this process (or uses `--kubeconfig` for a running one),
installs the CRDs, runs the operator, applies the manifests and shows each run live until every
one has finished. `up` keeps such a cluster and operator running in the background for kubectl;
`down` stops it. In the emulated cluster pods are processes of this Python environment, so user
code comes from `--code-path` directories (what an image would hold) and from each manifest's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich and the local package need the `local` extra: imported when used
    from rich.console import Console

    from proctor.local.progress import RunView
    from proctor.local.session import Outcome

DEFAULT_STATE_DIR = Path(".proctor") / "local"
EXIT_CODES = (
    "exit codes: 0 every run succeeded, 1 a run failed or is blocked, 2 invalid manifests or "
    "a refused apply, 3 --timeout passed, 4 the local cluster or its operator broke, "
    "130 interrupted"
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = commands.add_parser("local", help="run experiments on this machine (local mode)")
    verbs = local.add_subparsers(title="local commands", metavar="COMMAND", required=True)

    run = verbs.add_parser(
        "run",
        help="apply manifests and follow every run to its end",
        description="Start the emulated cluster and the operator (or use --kubeconfig), apply "
        "the manifests, show each run live, and end with a summary.",
        epilog=EXIT_CODES,
    )
    run.add_argument("files", nargs="+", type=Path, metavar="FILE")
    run.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="use this cluster (real, or `proctor local up`'s) instead of starting one; its "
        "CRDs and operator must be installed",
    )
    run.add_argument("--output", choices=("table", "json"), default="table")
    run.add_argument("--timeout", type=float, default=1800, help="seconds to wait (default 1800)")
    run.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="NAME=PHASE",
        help="the run NAME should end in PHASE (Succeeded, Failed, Blocked, Concluded) for the "
        "exit code to be 0; unnamed runs should succeed (repeatable)",
    )
    run.add_argument(
        "--replace",
        action="store_true",
        help="delete objects of the same names first (with --kubeconfig: they may exist)",
    )
    _common(run)
    run.set_defaults(run=_run)

    up = verbs.add_parser("up", help="start a cluster and operator in the background")
    _common(up)
    up.set_defaults(run=_up)
    serve = verbs.add_parser("serve", help="what `up` runs: cluster and operator in the foreground")
    _common(serve)
    serve.set_defaults(run=_serve)
    down = verbs.add_parser("down", help="stop what `up` started")
    down.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    down.set_defaults(run=_down)


def _common(verb: argparse.ArgumentParser) -> None:
    verb.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"kubeconfig, logs, pods and bundles (default: {DEFAULT_STATE_DIR})",
    )
    verb.add_argument("--namespace", default="default", help="for documents that name none")
    verb.add_argument(
        "--bundle-uri",
        default=None,
        help="where recovery bundles go unless an Experiment says, for the operator this command "
        "starts (s3://bucket/prefix; default: file://STATE_DIR/bundles); a cluster named by "
        "--kubeconfig keeps its operator's setting",
    )
    verb.add_argument(
        "--code-path",
        type=Path,
        action="append",
        default=[],
        help="directory the pods import user code from, as an image would hold it (repeatable; "
        "each manifest's directory is always added)",
    )


# ---- run ---------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from proctor.kube import KubeError
    from proctor.local.bootstrap import LocalClusterError
    from proctor.local.manifests import ApplyError, read_manifests
    from proctor.local.summary import ExitCode, parse_expectations

    # Not a terminal (a log, a pipe): wide enough that the final table needs no wrapping.
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
    console = Console(stderr=args.output == "json", width=width)
    try:
        args.expected = parse_expectations(args.expect)
        documents = read_manifests(args.files, args.namespace)
    except (ApplyError, ValueError) as exc:
        console.print(f"[red]proctor local run:[/red] {exc}", highlight=False)
        return ExitCode.INVALID
    try:
        if args.kubeconfig is not None:
            return _follow(args, documents, args.kubeconfig, operator=None, console=console)
        run_dir = args.state_dir / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        _extend_pythonpath([*args.code_path, *(f.parent for f in args.files)])
        _log_to(run_dir / "cluster.log")
        with embedded_cluster(run_dir) as kubeconfig:
            return _follow(args, documents, kubeconfig, operator=run_dir, console=console)
    except KeyboardInterrupt:
        console.print("interrupted: the cluster and the operator are stopped")
        return 130
    except (LocalClusterError, KubeError) as exc:
        # In the shape the agent verbs use, so a caller reading --output json gets JSON.
        hint = "the log named above says why; fix that and run `proctor local run` again"
        if args.output == "json":
            print(json.dumps({"error": str(exc), "hint": hint}, indent=2))
        else:
            console.print(f"[red]proctor local run:[/red] {exc}", highlight=False)
        return ExitCode.BROKEN


def _follow(
    args: argparse.Namespace,
    documents: list[dict[str, Any]],
    kubeconfig: Path,
    *,
    operator: Path | None,
    console: Console,
) -> int:
    """Set the cluster up (CRDs and operator, when it is ours), apply, follow, report."""
    from rich.live import Live

    from proctor.local import live as view
    from proctor.local.bootstrap import (
        OperatorProcess,
        ensure_namespaces,
        install_crds,
        missing_crds,
    )
    from proctor.local.manifests import ApplyError
    from proctor.local.session import LocalRun, kube_client
    from proctor.local.summary import ExitCode

    kube = kube_client(kubeconfig)
    bundle_uri = None  # another cluster's operator has its own default store
    process = None
    if operator is not None:
        bundle_uri = args.bundle_uri or (args.state_dir.resolve() / "bundles").as_uri()
        install_crds(kube.api)
        # Every namespace the documents name: an operator watching only --namespace would
        # leave a document that names another Pending until --timeout.
        watched = sorted({d["metadata"]["namespace"] for d in documents})
        ensure_namespaces(kube.api, watched)
        process = OperatorProcess(
            kubeconfig, operator / "operator.log", namespaces=watched, bundle_uri=bundle_uri
        )
        process.start()
    elif missing := missing_crds(kube.api):
        console.print(
            f"[red]proctor local run:[/red] the cluster has no {', '.join(missing)}: install "
            "Proctor there first (helm install proctor charts/proctor, or `proctor local up`)"
        )
        return ExitCode.INVALID
    try:
        try:
            local_run = LocalRun.apply(
                kube,
                documents,
                args.replace,
                alive=process.check if process else lambda: None,
            )
        except ApplyError as exc:
            console.print(f"[red]proctor local run:[/red] {exc}", highlight=False)
            return ExitCode.INVALID
        if args.output == "json":
            outcome = local_run.follow(lambda views, elapsed: None, args.timeout)
        elif console.is_terminal:
            with Live(console=console, refresh_per_second=4) as screen:
                outcome = local_run.follow(
                    lambda views, elapsed: screen.update(view.live_view(views, elapsed)),
                    args.timeout,
                )
        else:
            seen: dict[str, RunView] = {}

            def log(views: list[RunView], elapsed: float) -> None:
                for line in view.event_lines(seen, views, elapsed):
                    console.print(line, highlight=False, soft_wrap=True)
                seen.update({v.name: v for v in views})

            outcome = local_run.follow(log, args.timeout)
    finally:
        if process is not None:
            process.stop()
    log_path = str(operator / "operator.log") if operator else "(the cluster's operator)"
    return _report(args, outcome, bundle_uri, log_path, console)


def _report(
    args: argparse.Namespace, outcome: Outcome, bundle_uri: str | None, log: str, console: Console
) -> int:
    """The JSON record, or the final table, the findings and each run's first bundle."""
    from proctor.local import live as view
    from proctor.local.bundles import BundleError, load_bundle, render_bundle
    from proctor.local.summary import exit_code, summary_json

    code = exit_code(outcome.views, outcome.timed_out, args.expected)
    if args.output == "json":
        record = summary_json(
            outcome.views,
            elapsed=outcome.elapsed,
            timed_out=outcome.timed_out,
            bundle_uri=bundle_uri,
            log=log,
            expected=args.expected,
        )
        print(json.dumps(record, indent=2))
        return code
    console.print(view.final_table(outcome.views, args.expected))
    console.print(view.findings(outcome.views), end="")
    for run in outcome.views:
        for anomaly in run.anomalies[:1]:  # one bundle per run; the rest are named in the table
            if anomaly.bundle_uri:
                try:
                    console.print(render_bundle(load_bundle(anomaly.bundle_uri), prompt=False))
                    console.print(
                        f"the recovery prompt: proctor bundle show {anomaly.bundle_uri}",
                        soft_wrap=True,
                    )
                except BundleError as exc:
                    console.print(f"[yellow]bundle not readable yet:[/yellow] {exc}")
    if outcome.timed_out:
        console.print(f"[yellow]--timeout {args.timeout:.0f}s passed before every run ended")
    console.print(f"{outcome.elapsed:.0f}s; operator log: {log}", style="dim")
    return code


def _log_to(path: Path) -> None:
    """The in-process cluster's log lines go to a file: the terminal belongs to the view."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=path, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _extend_pythonpath(paths: list[Path]) -> None:
    """Pods inherit this process's environment: user code importable there, as in an image."""
    entries = list(dict.fromkeys(str(p.resolve()) for p in paths))
    existing = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(entries + ([existing] if existing else []))


@contextmanager
def embedded_cluster(run_dir: Path) -> Iterator[Path]:
    """The emulated cluster, its pods under `run_dir`, served from a thread of this process;
    yields its kubeconfig."""
    from proctor.cluster.runtime import EmulatedCluster  # needs the `local` extra

    kubeconfig = run_dir.resolve() / "kubeconfig"
    ready: Future[None] = Future()
    stop = threading.Event()

    async def serve() -> None:
        async with EmulatedCluster(kubeconfig=kubeconfig, pods_dir=run_dir.resolve() / "pods"):
            ready.set_result(None)
            while not stop.is_set():
                await asyncio.sleep(0.1)

    def main() -> None:
        try:
            asyncio.run(serve())
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=main, name="emulated-cluster", daemon=True)
    thread.start()
    ready.result(timeout=60)
    try:
        yield kubeconfig
    finally:
        stop.set()
        thread.join(timeout=60)


# ---- up / serve / down -------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    """The cluster and the operator until SIGTERM or Ctrl-C; `ready` marks them usable."""
    from proctor.local.bootstrap import OperatorProcess, install_crds
    from proctor.local.session import kube_client

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _extend_pythonpath(args.code_path)
    state = args.state_dir.resolve()
    _log_to(state / "cluster.log")
    bundle_uri = args.bundle_uri or (state / "bundles").as_uri()
    (state / "ready").unlink(missing_ok=True)
    with embedded_cluster(state) as kubeconfig:
        install_crds(kube_client(kubeconfig).api)
        # Long-lived, for whatever kubectl applies: every namespace.
        operator = OperatorProcess(
            kubeconfig, state / "operator.log", namespaces=[], bundle_uri=bundle_uri
        )
        operator.start()
        (state / "ready").write_text(str(kubeconfig))
        print(f"ready; KUBECONFIG={kubeconfig}", flush=True)
        try:
            while not stop.is_set():
                operator.check()
                stop.wait(1)
        except KeyboardInterrupt:
            pass
        finally:
            (state / "ready").unlink(missing_ok=True)
            operator.stop()
    return 0


def _up(args: argparse.Namespace) -> int:
    from proctor.cli.cluster import _running_pid

    state = args.state_dir.resolve()
    if _running_pid(state / "pid") is not None:
        print(f"already running; export KUBECONFIG={state / 'kubeconfig'}")
        return 0
    state.mkdir(parents=True, exist_ok=True)
    (state / "ready").unlink(missing_ok=True)  # a serve killed with -9 left it behind
    command = [sys.executable, "-m", "proctor.cli.main", "local", "serve"]
    command += ["--state-dir", str(state), "--namespace", args.namespace]
    command += [f"--code-path={path.resolve()}" for path in args.code_path]
    if args.bundle_uri:
        command += ["--bundle-uri", args.bundle_uri]
    with (state / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (state / "pid").write_text(str(process.pid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = state / "serve.log"
            print(f"it exited with {process.returncode}; see {log}", file=sys.stderr)
            return 1
        if (state / "ready").exists():
            paths = ", ".join(str(path.resolve()) for path in args.code_path) or "none"
            print(
                f"local cluster and operator up. Use them with:\n"
                f"  export KUBECONFIG={state / 'kubeconfig'}\n"
                f"  kubectl apply -f FILE && kubectl get exp -w\n"
                f"or follow runs: proctor local run --kubeconfig {state / 'kubeconfig'} FILE...\n"
                f"Pods import user code from: {paths} (set with `local up --code-path DIR`)."
            )
            return 0
        time.sleep(0.2)
    print(f"not ready within 60s; see {state / 'serve.log'}", file=sys.stderr)
    return 1


def _down(args: argparse.Namespace) -> int:
    from proctor.cli.cluster import _running_pid

    pid_file = args.state_dir.resolve() / "pid"
    pid = _running_pid(pid_file)
    if pid is None:
        print("no local cluster is running here")
        return 0
    # Its operator and pod processes, found now: once it is gone they belong to init, and pods
    # run in sessions of their own, out of reach of a signal to its process group.
    tree = _process_tree(pid)
    os.kill(pid, signal.SIGTERM)  # it stops its operator and pods itself
    for _ in range(300):
        if _running_pid(pid_file) is None:
            break
        time.sleep(0.1)
    for straggler, started in tree.items():  # what a graceful stop did not end, in 30 s
        if _start_time(straggler) == started:  # the same process, not a reused pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(straggler, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    print("local cluster and operator stopped")
    return 0


def _process_tree(pid: int) -> dict[int, int]:
    """`pid` and every live process below it, each with its start time (Linux /proc; an
    empty tree elsewhere, where `local down` then only signals `pid` itself)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(int(stat.parent.name))
        if fields:
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, queue = {pid: _start_time(pid)}, [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            tree[child] = _start_time(child)
            queue.append(child)
    return {p: started for p, started in tree.items() if started is not None}


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): state, ppid, ..."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []  # exited while listed, or not Linux


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 else None
