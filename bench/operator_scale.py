"""The operator under 1,000 Experiments applied at once, on the emulated cluster.

    .venv/bin/python bench/operator_scale.py [--experiments 1000] [--resync-seconds 10]

Validation is skipped and training is `true` with no watchdog, so the operator is what is
measured, not the pods. The real operator runs as a subprocess (`proctor operator`, the
chart's settings unless flags say otherwise); the emulated API server and its pod runner run in
this process, and a store listener timestamps every object as the server commits it, so the
clocks are the server's, not a client's. Reported:

- apply -> first Job: from an Experiment's creation to its training Job's (p50, p99, max);
- all finished: from the first creation to the last Experiment reaching Succeeded;
- operator CPU seconds and peak RSS (from /proc: utime+stime, VmHWM), and the CPU seconds of the
  emulated cluster (this process), to show which side the time goes to;
- API requests the operator made, per Experiment, by verb (User-Agent kopf / proctor-operator).

Goals (issue 11): p99 under 1 s, peak RSS under 300 MiB, requests per experiment bounded.
Record the printed figures in BENCHMARKS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import functools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from proctor.cluster.runtime import EmulatedCluster
from proctor.cluster.store import WatchEvent

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = "/apis/proctor.dev/v1alpha1/namespaces/default/experiments"
OPERATOR_CLIENTS = ("kopf", "proctor-operator")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@functools.cache
def _digits_example() -> dict[str, Any]:
    # Read once: parsing the YAML per Experiment cost the benchmark's process (which also runs
    # the emulated cluster, under one GIL) as much CPU as the apply it measures.
    text = (REPO / "examples/digits/experiment.yaml").read_text()
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest


def trivial_experiment(name: str) -> dict[str, Any]:
    """The digits example, reduced to what the operator handles: no pyramid, no watchdog,
    training `true`. No study label: a study would run its members one at a time."""
    manifest = copy.deepcopy(_digits_example())
    manifest["metadata"] = {"name": name}
    spec = manifest["spec"]
    spec["validation"] = {"skip": {"reason": "scale benchmark: the operator is measured"}}
    spec["watchdog"] = {"enabled": False}
    spec["training"] = {
        "command": ["true"],
        "budget": {"maxSteps": 1, "maxDuration": "10m"},
        "resources": {"gpus": 0, "cpu": "100m", "memory": "64Mi"},
    }
    return copy.deepcopy(manifest)


class Timeline:
    """When the server committed each Experiment, its first Job, and its end (monotonic s)."""

    def __init__(self) -> None:
        self.created: dict[str, float] = {}
        self.first_job: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.jobs: Counter[str] = Counter()

    def __call__(self, event: WatchEvent) -> None:
        now = time.monotonic()
        obj = event.object
        meta = obj.get("metadata") or {}
        if event.key == ("proctor.dev", "experiments"):
            name = meta["name"]
            if event.type == "ADDED":
                self.created.setdefault(name, now)
            phase = (obj.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") and name not in self.finished:
                self.finished[name] = now
        elif event.key == ("batch", "jobs") and event.type == "ADDED":
            owner = (meta.get("labels") or {}).get("proctor.dev/experiment")
            if owner:
                self.jobs[owner] += 1
                self.first_job.setdefault(owner, now)


@contextmanager
def emulated_cluster(state: Path, timeline: Timeline) -> Iterator[EmulatedCluster]:
    """The API server and pod runner on a thread of this process, for the `with` block."""
    ready: Future[EmulatedCluster] = Future()
    stop = threading.Event()

    async def serve() -> None:
        cluster = EmulatedCluster(kubeconfig=state / "kubeconfig", pods_dir=state / "pods")
        async with cluster:
            cluster.store.add_listener(timeline)
            ready.set_result(cluster)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    try:
        yield ready.result(timeout=60)
    finally:
        stop.set()
        thread.join(timeout=120)


class ProcessSampler:
    """CPU seconds and resident memory of one process, read from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def sample(self) -> None:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):  # the kernel's own high-water mark of RSS
                self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)


def start_operator(kubeconfig: Path, log: Path, resync_seconds: float) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "proctor.cli.main",
        "operator",
        "--namespace",
        "default",
        "--resync-seconds",
        str(resync_seconds),
        "--metrics-port",
        "0",
        "--liveness",
        "",
    ]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


async def apply_all(url: str, count: int, concurrency: int = 16) -> None:
    """Create `count` Experiments as fast as the server takes them."""
    names = iter(range(count))

    async def worker(http: aiohttp.ClientSession) -> None:
        for i in names:
            async with http.post(EXPERIMENTS, json=trivial_experiment(f"exp-{i:04d}")) as reply:
                if reply.status != 201:
                    raise RuntimeError(f"create exp-{i:04d}: {reply.status} {await reply.text()}")

    headers = {"User-Agent": "proctor-bench"}
    async with aiohttp.ClientSession(url, headers=headers) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))


def wait_operator_ready(cluster: EmulatedCluster, process: subprocess.Popen[bytes]) -> float:
    """Seconds until the operator has listed Experiments (its watch is up)."""
    started = time.monotonic()
    while time.monotonic() - started < 120:
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited with {process.returncode}")
        counts = cluster.api.request_counts
        if any(
            n
            for (client, verb, _), n in counts.items()
            if client in OPERATOR_CLIENTS and verb in ("list", "watch")
        ):
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError("the operator did not start watching within 120 s")


def _own_cpu_seconds() -> float:
    """This process's CPU time: the emulated API server and pod runner, and the few requests
    that apply the Experiments."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(count: int, resync_seconds: float, timeout: float) -> dict[str, float]:
    timeline = Timeline()
    with (
        tempfile.TemporaryDirectory(prefix="proctor-scale-") as tmp,
        emulated_cluster(Path(tmp), timeline) as cluster,
    ):
        state = Path(tmp)
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            asyncio.run(_post_crd(cluster.url, yaml.safe_load(crd.read_text())))
        operator = start_operator(state / "kubeconfig", state / "operator.log", resync_seconds)
        sampler = ProcessSampler(operator.pid)
        try:
            startup = wait_operator_ready(cluster, operator)
            before = Counter(cluster.api.request_counts)
            cpu_before = sampler.cpu_seconds()
            own_before = _own_cpu_seconds()
            applied_at = time.monotonic()
            asyncio.run(apply_all(cluster.url, count))
            apply_seconds = time.monotonic() - applied_at
            deadline = time.monotonic() + timeout
            while len(timeline.finished) < count and time.monotonic() < deadline:
                sampler.sample()
                if operator.poll() is not None:
                    raise RuntimeError(f"the operator exited; see {state / 'operator.log'}")
                time.sleep(0.5)
            sampler.sample()
            cpu = sampler.cpu_seconds() - cpu_before
            emulator_cpu = _own_cpu_seconds() - own_before
            requests = Counter(cluster.api.request_counts)
            requests.subtract(before)
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print("warning: the operator did not stop within 60 s of SIGTERM; killed")
                operator.kill()
                operator.wait()
        if len(timeline.finished) < count:
            print(f"warning: {count - len(timeline.finished)} experiments unfinished at timeout")
        latencies = [
            timeline.first_job[name] - timeline.created[name]
            for name in timeline.created
            if name in timeline.first_job
        ]
        operator_requests: Counter[str] = Counter()
        for (client, verb, resource), n in requests.items():
            if client in OPERATOR_CLIENTS:
                operator_requests[f"{verb} {resource}"] += n
        figures = {
            "experiments": float(count),
            "operator startup (s)": startup,
            f"apply {count} (s)": apply_seconds,
            "apply -> first Job p50 (s)": statistics.median(latencies),
            "apply -> first Job p99 (s)": percentile(latencies, 0.99),
            "apply -> first Job max (s)": max(latencies),
            "all finished (s)": max(timeline.finished.values()) - min(timeline.created.values()),
            "Jobs created per experiment": sum(timeline.jobs.values()) / count,
            "operator CPU (s)": cpu,
            "emulated cluster CPU (s, this process)": emulator_cpu,
            "operator peak RSS (MiB)": sampler.peak_rss / 2**20,
            "operator requests per experiment": sum(operator_requests.values()) / count,
        }
        for what, n in sorted(operator_requests.items()):
            figures[f"  {what} per experiment"] = n / count
        by_client: Counter[str] = Counter()
        for (client, _, _), n in requests.items():
            by_client[client] += n
        for client, n in sorted(by_client.items()):
            figures[f"requests from {client} (all)"] = float(n)
        return figures


async def _post_crd(url: str, crd: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession(url) as http,
        http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd) as reply,
    ):
        if reply.status != 201:
            raise RuntimeError(f"CRD: {reply.status} {await reply.text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--resync-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    figures = run(args.experiments, args.resync_seconds, args.timeout)
    print(f"operator at scale, {args.experiments} experiments applied at once:")
    for name, value in figures.items():
        print(f"  {name:<40} {value:10.3f}")


if __name__ == "__main__":
    main()
