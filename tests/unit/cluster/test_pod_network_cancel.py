"""The pod network gives back what a pod took, even when the pod is cancelled (deleted) while
its ports are being published: no IP stays taken, no forwarder keeps listening."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from proctor.cluster.podnet import PodNetwork


def _pod(ports: list[int]) -> dict:
    container = {"name": "c", "ports": [{"containerPort": p} for p in ports]}
    return {"metadata": {"name": "p"}, "spec": {"containers": [container]}}


def _listening(ip: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((ip, port)) == 0


def test_an_attach_cancelled_half_way_gives_back_its_ip_and_closes_its_forwarders():
    ports = [18101, 18102, 18103, 18104]

    async def scenario() -> tuple[set[str], list[bool], str]:
        network = PodNetwork()
        attaching = asyncio.ensure_future(network.attach(_pod(ports)))
        await asyncio.sleep(0)  # it has taken an IP and is publishing the first port
        await asyncio.sleep(0)
        attaching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attaching
        ip = sorted(network._free_ips)[0] if network._free_ips else ""
        return network._in_use, [_listening(ip, p) for p in ports] if ip else [], ip

    in_use, listening, ip = asyncio.run(scenario())
    assert in_use == set(), "the cancelled pod's IP is still taken"
    assert ip, "the IP was not given back to the pool"
    assert not any(listening)


def test_a_whole_attach_and_detach_leave_nothing_behind():
    async def scenario() -> tuple[bool, bool, set[str]]:
        network = PodNetwork()
        address = await network.attach(_pod([18111]))
        up = _listening(address.ip, 18111)
        await network.detach(address)
        return up, _listening(address.ip, 18111), network._in_use

    up, still, in_use = asyncio.run(scenario())
    assert up
    assert not still
    assert in_use == set()
