"""`proctor cluster up|down|serve`: the emulated cluster as a long-lived local process.

`up` starts `serve` in the background and waits until the API answers; it writes a kubeconfig into
the state directory so kubectl, helm and the operator can use it as they would a real cluster.
`down` stops it. `serve` runs it in the foreground (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_STATE_DIR = Path(".proctor") / "cluster"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser("cluster", help="the emulated local Kubernetes cluster")
    verbs = cluster.add_subparsers(title="cluster commands", metavar="COMMAND", required=True)
    for name, help_text, run in (
        ("up", "start it in the background and write a kubeconfig", _up),
        ("serve", "run it in the foreground until interrupted", _serve),
        ("down", "stop the cluster that `up` started", _down),
    ):
        verb = verbs.add_parser(name, help=help_text)
        verb.add_argument(
            "--state-dir",
            type=Path,
            default=DEFAULT_STATE_DIR,
            help=f"kubeconfig, pid, log and pod directories (default: {DEFAULT_STATE_DIR})",
        )
        if name != "down":
            verb.add_argument("--port", type=int, default=0, help="API port (default: any free)")
        verb.set_defaults(run=run)


def _paths(state_dir: Path) -> dict[str, Path]:
    return {
        "kubeconfig": state_dir / "kubeconfig",
        "pid": state_dir / "pid",
        "log": state_dir / "cluster.log",
        "pods": state_dir / "pods",
    }


def _up(args: argparse.Namespace) -> int:
    paths = _paths(args.state_dir)
    if _running_pid(paths["pid"]) is not None:
        print(f"already running; KUBECONFIG={paths['kubeconfig'].resolve()}")
        return 0
    args.state_dir.mkdir(parents=True, exist_ok=True)
    paths["kubeconfig"].unlink(missing_ok=True)
    with paths["log"].open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proctor.cli.main",
                "cluster",
                "serve",
                "--state-dir",
                str(args.state_dir),
                "--port",
                str(args.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    paths["pid"].write_text(str(process.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(
                f"the cluster exited with {process.returncode}; see {paths['log']}", file=sys.stderr
            )
            return 1
        if paths["kubeconfig"].exists() and _answers(paths["kubeconfig"]):
            print(f"cluster up. Use it with:\n  export KUBECONFIG={paths['kubeconfig'].resolve()}")
            return 0
        time.sleep(0.2)
    print(f"the cluster did not answer within 30s; see {paths['log']}", file=sys.stderr)
    return 1


def _down(args: argparse.Namespace) -> int:
    paths = _paths(args.state_dir)
    pid = _running_pid(paths["pid"])
    if pid is None:
        print("no cluster is running here")
        return 0
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if _running_pid(paths["pid"]) is None:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    paths["pid"].unlink(missing_ok=True)
    print("cluster stopped")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from proctor.cluster.runtime import EmulatedCluster  # needs the `local` extra

    paths = _paths(args.state_dir)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with EmulatedCluster(
            port=args.port,
            kubeconfig=paths["kubeconfig"].resolve(),
            pods_dir=paths["pods"].resolve(),
        ) as cluster:
            print(f"serving {cluster.url}; kubeconfig {paths['kubeconfig']}", flush=True)
            await stop.wait()

    asyncio.run(run())
    paths["kubeconfig"].unlink(missing_ok=True)
    return 0


def _running_pid(pid_file: Path) -> int | None:
    """The pid of our `cluster serve` process, or None (never another process that reuses it)."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if b"serve" not in command or not any(b"proctor" in part for part in command):
        return None
    try:  # a zombie child of ours counts as stopped
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return None
    except OSError:
        pass
    return pid


def _answers(kubeconfig: Path) -> bool:
    import yaml

    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    try:
        with urllib.request.urlopen(f"{server}/version", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
