"""Throughput of the emulated API server with 1,000 objects: create, list, watch.

    .venv/bin/python bench/emulator_throughput.py [--objects 1000]

Runs the server in-process and drives it over HTTP with aiohttp, as kopf does. Experiments go
through the full admission path (pruning, defaults, schema, CEL); ConfigMaps through the plain
path. Figures are per second of wall time on this machine; record them in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
from pathlib import Path

import aiohttp
import yaml

from proctor.cluster.runtime import EmulatedCluster

REPO = Path(__file__).resolve().parents[1]


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

        received = 0
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal received
            async with http.get(
                "/apis/proctor.dev/v1alpha1/namespaces/default/experiments",
                params={"watch": "true", "resourceVersion": "0"},
            ) as response:
                async for line in response.content:
                    if json.loads(line)["type"] == "ADDED":
                        received += 1
                        if received == count:
                            done.set()
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)

        for plural, path, make in (
            (
                "configmaps",
                "/api/v1/namespaces/default/configmaps",
                lambda i: {"metadata": {"name": f"cm-{i}"}, "data": {"k": str(i)}},
            ),
            (
                "experiments",
                "/apis/proctor.dev/v1alpha1/namespaces/default/experiments",
                lambda i: {**copy.deepcopy(experiment), "metadata": {"name": f"exp-{i}"}},
            ),
        ):
            started = time.perf_counter()
            for i in range(count):
                async with http.post(path, json=make(i)) as response:
                    assert response.status == 201, await response.text()
            results[f"create {plural} /s"] = count / (time.perf_counter() - started)
            started = time.perf_counter()
            async with http.get(path) as response:
                items = (await response.json())["items"]
            assert len(items) == count
            results[f"list {count} {plural} (ms)"] = (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        await asyncio.wait_for(done.wait(), 60)
        results["watch events delivered"] = received
        watcher.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    results = asyncio.run(bench(args.objects))
    print(f"emulated API server, {args.objects} objects of each kind:")
    for name, value in results.items():
        print(f"  {name:32s} {value:10.1f}")


if __name__ == "__main__":
    main()
