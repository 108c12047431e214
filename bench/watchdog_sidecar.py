"""What the watchdog sidecar costs: CPU and peak memory of `proctor watchdog` watching a real
trainer (the digits example) at a dense 1 s check interval, the interval of a run's warm-up.

    .venv/bin/python bench/watchdog_sidecar.py [--seconds 60]

The sidecar's figures come from /proc (user+system CPU time, VmHWM), read just before it is
stopped; the trainer runs beside it as in a pod. Bundles go to a local directory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = _port()
        metrics = work / "metrics.jsonl"
        common = {**os.environ, "PROCTOR_EXPERIMENT": "bench", "PROCTOR_NAMESPACE": "bench"}
        trainer = subprocess.Popen(
            [
                *(sys.executable, "-m", "proctor.cli.main", "train"),
                *("--entrypoint", "digits_mlp:setup", "--path", str(REPO / "examples/digits")),
                *("--max-steps", "100000000", "--max-duration", f"{int(args.seconds) + 60}s"),
                *("--metrics-port", str(port), "--metrics-file", str(metrics)),
                *("--experiment", "bench", "--namespace", "bench"),
            ],
            env=common,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        watchdog_env = {
            **common,
            "PROCTOR_METRICS_URL": f"http://127.0.0.1:{port}/metrics",
            "PROCTOR_METRICS_FILE": str(metrics),
            "PROCTOR_BUNDLE_URI": f"file://{work}/bundles/bench/bench",
            "PROCTOR_SPOOL_DIR": str(work / "spool"),
            "PROCTOR_WATCHDOG": json.dumps({"schedule": {"denseInterval": "1s", "warmup": "1h"}}),
            "KUBECONFIG": str(work / "none"),
        }
        started = time.monotonic()
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "proctor.cli.main", "watchdog"],
            env=watchdog_env,
            stdout=subprocess.DEVNULL,
            stderr=(work / "watchdog.log").open("w"),
        )
        try:
            time.sleep(args.seconds)
            cpu = _cpu_seconds(watchdog.pid)
            rss = _peak_rss_mib(watchdog.pid)
            elapsed = time.monotonic() - started
        finally:
            watchdog.send_signal(signal.SIGTERM)
            watchdog.wait(timeout=30)
            trainer.kill()
            trainer.wait(timeout=30)
        bundles = (
            list((work / "bundles").rglob("bundle.json")) if (work / "bundles").exists() else []
        )
        checks = sum(
            1 for line in (work / "watchdog.log").read_text().splitlines() if "check failed" in line
        )
        print(f"watched a real trainer for {elapsed:.0f} s at a 1 s check interval")
        print(
            f"watchdog CPU   {cpu:.2f} s = {100 * cpu / elapsed:.1f}% of one core (incl. start-up)"
        )
        print(f"watchdog peak RSS {rss:.0f} MiB")
        print(f"findings on this healthy run: {len(bundles)} bundles; failed checks: {checks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
