"""Throughput of the emulated API server with 1,000 objects: create, list, status patch, watch.

    .venv/bin/python bench/emulator_throughput.py [--objects 1000]

Runs the server in-process and drives it over HTTP with aiohttp, one request at a time, as kopf
does. Experiments go through the full admission path (pruning, defaults, schema, CEL);
ConfigMaps through the plain one. A watch opened before the status patches must deliver every
one of them. Figures are per second of wall time on this machine; record them in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from proctor.cluster.runtime import EmulatedCluster

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = "/apis/proctor.dev/v1alpha1/namespaces/default/experiments"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


async def _create_and_list(
    http: aiohttp.ClientSession, path: str, objects: list[dict[str, Any]], label: str
) -> dict[str, float]:
    started = time.perf_counter()
    for obj in objects:
        async with http.post(path, json=obj) as response:
            assert response.status == 201, await response.text()
    created = len(objects) / (time.perf_counter() - started)
    started = time.perf_counter()
    async with http.get(path) as response:
        assert len((await response.json())["items"]) == len(objects)
    listed_ms = (time.perf_counter() - started) * 1000
    return {f"create {label} /s": created, f"list {len(objects)} {label} (ms)": listed_ms}


async def bench(count: int) -> dict[str, float]:
    experiment = yaml.safe_load((REPO / "examples/digits/experiment.yaml").read_text())
    results: dict[str, float] = {}
    async with EmulatedCluster() as cluster, aiohttp.ClientSession(cluster.url) as http:
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            async with http.post(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                json=yaml.safe_load(crd.read_text()),
            ) as response:
                assert response.status == 201, await response.text()
        configmaps = [
            {"metadata": {"name": f"cm-{i}"}, "data": {"k": str(i)}} for i in range(count)
        ]
        results |= await _create_and_list(http, CONFIGMAPS, configmaps, "configmaps")
        experiments = [
            {**copy.deepcopy(experiment), "metadata": {"name": f"exp-{i}"}} for i in range(count)
        ]
        results |= await _create_and_list(http, EXPERIMENTS, experiments, "experiments")

        delivered = asyncio.Event()
        received = 0
        last_event_at = 0.0

        async def watch() -> None:
            nonlocal received, last_event_at
            params = {"watch": "true", "resourceVersion": str(cluster.store.resource_version)}
            async with http.get(EXPERIMENTS, params=params) as response:
                async for line in response.content:
                    if json.loads(line)["type"] == "MODIFIED":
                        received += 1
                        last_event_at = time.perf_counter()
                        if received == count:
                            delivered.set()
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        headers = {"Content-Type": "application/merge-patch+json"}
        body = json.dumps({"status": {"phase": "Validating"}})
        started = time.perf_counter()
        for i in range(count):
            async with http.patch(f"{EXPERIMENTS}/exp-{i}/status", headers=headers, data=body) as r:
                assert r.status == 200, await r.text()
        results["status patches /s"] = count / (time.perf_counter() - started)
        await asyncio.wait_for(delivered.wait(), 60)
        results["watch: MODIFIED events delivered"] = received
        results["watch: events delivered /s"] = received / (last_event_at - started)
        watcher.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    results = asyncio.run(bench(args.objects))
    print(f"emulated API server, {args.objects} objects of each kind:")
    for name, value in results.items():
        print(f"  {name:36s} {value:10.1f}")


if __name__ == "__main__":
    main()
