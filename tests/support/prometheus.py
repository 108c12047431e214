"""A real Prometheus server for a test: scrapes the given targets on 127.0.0.1, then stops."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expression: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as response:
            body = json.loads(response.read())
        return list(body["data"]["result"])

    def query_at(self, expression: str, time: float) -> list[dict[str, Any]]:
        """An instant query evaluated at `time` (Unix seconds)."""
        return list(self._get("query", {"query": expression, "time": f"{time:.3f}"})["result"])

    def query_range(
        self, expression: str, start: float, end: float, step: float = 1
    ) -> list[dict[str, Any]]:
        """A range query, as a Grafana time series panel sends it."""
        params = {"query": expression, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        return list(self._get("query_range", {**params, "step": str(step)})["result"])

    def label_values(self, label: str, match: str, start: float, end: float) -> list[str]:
        """The values of `label` on the series `match` selects: Grafana's `label_values()`."""
        params = {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        return [str(value) for value in self._get(f"label/{label}/values", params)]

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())["data"]
        except urllib.error.HTTPError as error:  # a bad query: say which, and why
            raise AssertionError(f"{path} {params}: {error.read().decode()}") from None

    def wait_for(self, expression: str, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expression)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"Prometheus never returned a result for {expression}")


@contextmanager
def prometheus(
    tmp: Path,
    targets: list[str],
    *,
    scrape_configs: Sequence[dict[str, Any]] = (),
    rule_files: Sequence[Path] = (),
) -> Iterator[Prometheus]:
    """`targets` scraped as one job; `scrape_configs` adds jobs of their own (target labels,
    file-based discovery); `rule_files` are evaluated every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise AssertionError(
            "prometheus is not installed: `make setup` installs it as root "
            "(apt-get install prometheus)"
        )
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "test", "static_configs": [{"targets": targets}]},
            *scrape_configs,
        ],
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("w"),
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{server.url}/-/ready", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError((tmp / "prometheus.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def serve_text(text: str) -> tuple[http.server.ThreadingHTTPServer, int]:
    """An exporter stand-in on 127.0.0.1: serves `text` (an exposition) at every path; returns
    the server (shut it down when done) and its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]
