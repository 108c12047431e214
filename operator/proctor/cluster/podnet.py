"""Pod networking for the emulated cluster: each pod gets its own IP and its own ports.

Every pod's processes share this host, where a real cluster gives each pod a network namespace.
Without one, two pods that declare the same `containerPort` (every trainer serves metrics on 9108)
would collide: the second cannot bind, and a sidecar scraping 127.0.0.1:9108 reads the first
pod's process. So for each pod the runner
- picks an IP of its own on the loopback network (127.1.x.y; Linux routes all of 127/8 to lo),
  reported as `status.podIP` and through the `status.podIP` fieldRef;
- gives each declared TCP `containerPort` a free host port, and rewrites the pod's references to
  the declared port to that host port: an env value or an arg that is exactly the port number,
  `--flag=PORT`, and `HOST:PORT` where HOST is this pod (127.0.0.1, localhost, 0.0.0.0, [::1] or
  its IP). So the process binds the host port, and its sidecars reach it there;
- forwards `<pod IP>:<containerPort>` to that host port, so other pods and the operator reach the
  pod at its IP and declared port, as they would in a cluster.

Ports a pod does not declare are not mapped: they stay shared, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)
POD_NETWORK = ipaddress.IPv4Network("127.1.0.0/16")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0", "[::1]")


def declared_ports(pod: dict[str, Any]) -> list[int]:
    """The TCP containerPorts any container of `pod` declares, sorted, without repeats."""
    spec = pod.get("spec") or {}
    ports = {
        int(port["containerPort"])
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        for port in container.get("ports") or []
        if (port.get("protocol") or "TCP") == "TCP" and "containerPort" in port
    }
    return sorted(ports)


def port_rewriter(pod_ip: str, ports: dict[int, int]) -> Callable[[str], str]:
    """A function that rewrites the declared ports in one env value or arg to their host ports.

    `ports` maps containerPort to host port. A value that is exactly a declared port, `--x=PORT`,
    or `HOST:PORT` with HOST this pod are rewritten; any other number is left alone."""
    if not ports:
        return lambda value: value
    numbers = "|".join(str(port) for port in sorted(ports, reverse=True))
    hosts = "|".join(re.escape(host) for host in (*_LOCAL_HOSTS, pod_ip))
    host_port = re.compile(rf"(?<![\w.-])((?:{hosts}):)({numbers})(?!\d)")
    whole = re.compile(rf"^(--?[\w.-]+=)?({numbers})$")

    def rewrite(value: str) -> str:
        value = whole.sub(lambda m: (m.group(1) or "") + str(ports[int(m.group(2))]), value)
        return host_port.sub(lambda m: m.group(1) + str(ports[int(m.group(2))]), value)

    return rewrite


@dataclass
class PodAddress:
    """One pod's IP, its port map and the forwarders that publish it; `close()` releases them."""

    ip: str
    ports: dict[int, int]
    servers: list[asyncio.Server] = field(default_factory=list)

    def rewriter(self) -> Callable[[str], str]:
        return port_rewriter(self.ip, self.ports)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.servers.clear()


class PodNetwork:
    """Hands out pod IPs and host ports, and forwards each pod's declared ports."""

    def __init__(self) -> None:
        self._hosts = POD_NETWORK.hosts()
        self._free_ips: list[str] = []
        self._in_use: set[str] = set()

    async def attach(self, pod: dict[str, Any]) -> PodAddress:
        """An IP for `pod` and a free host port per declared port, forwarded from `ip:port`."""
        address = PodAddress(self._next_ip(), {port: _free_port() for port in declared_ports(pod)})
        try:
            for container_port, host_port in address.ports.items():
                try:
                    address.servers.append(
                        await asyncio.start_server(
                            _forwarder(host_port), host=address.ip, port=container_port
                        )
                    )
                except OSError as exc:  # the pod still runs; only its IP:port is unreachable
                    logger.warning(
                        "pod %s: cannot publish %s:%d (%s); reach it on 127.0.0.1:%d",
                        pod["metadata"]["name"],
                        address.ip,
                        container_port,
                        exc,
                        host_port,
                    )
        except BaseException:  # cancelled half-way (the pod was deleted): give back what it got
            await asyncio.shield(self.detach(address))
            raise
        return address

    async def detach(self, address: PodAddress) -> None:
        await address.close()
        if address.ip in self._in_use:
            self._in_use.discard(address.ip)
            self._free_ips.append(address.ip)

    def _next_ip(self) -> str:
        ip = self._free_ips.pop() if self._free_ips else str(next(self._hosts))
        self._in_use.add(ip)
        return ip


def _free_port() -> int:
    """A port nothing listens on now; the pod's process binds it moments later."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _forwarder(
    target_port: int,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", target_port
            )
        except OSError:  # nothing listens yet: refuse, as a closed port would
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )

    return forward


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
