"""The DCGM source: dcgm-exporter expositions (the shared H100 fixtures and inline MIG text) and
Prometheus answers reduced to this pod's GPUs; the two readers against local HTTP servers."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from proctor.watchdog.dcgm import (
    DCGM_METRICS,
    DcgmUnavailable,
    gpu_samples_from_exposition,
    gpu_samples_from_prometheus,
    hostname_of,
    node_of,
    prometheus_query,
    read_exporter,
    read_prometheus,
)
from proctor.watchdog.observations import GpuSample

ROOT = Path(__file__).resolve().parents[2]
POD = "lr-warmup-2-train-0-x7k2p"
NAMESPACE = "team-a"
NOW = 1_790_000_000.0
H100 = "NVIDIA H100 80GB HBM3"


def _fixture(name: str) -> str:
    for shared in (ROOT.parent / "shared", ROOT / "shared"):
        path = shared / "fixtures" / "dcgm" / name
        if path.exists():
            return path.read_text()
    raise AssertionError(f"DCGM fixture {name} not found next to the repository (../shared)")


def _pod_samples(text: str) -> dict[str, GpuSample]:
    return {s.gpu: s for s in gpu_samples_from_exposition(text, POD, NAMESPACE, NOW)}


def _exported(text: str) -> str:
    """The exposition as Prometheus stores it with honorLabels false."""
    return text.replace(
        'container="trainer",namespace="team-a",pod=',
        ('exported_container="trainer",exported_namespace="team-a",exported_pod='),
    )


def test_the_healthy_fixture_gives_the_two_gpus_of_the_pod_with_their_values() -> None:
    samples = gpu_samples_from_exposition(_fixture("h100-healthy.prom"), POD, NAMESPACE, NOW)
    assert [s.gpu for s in samples] == ["0", "1"], "GPUs 2 and 3 carry no pod labels"
    for index, sample in enumerate(samples):
        assert sample == GpuSample(
            time=NOW,
            gpu=str(index),
            uuid=f"GPU-5a1c000{index}-7e2b-4c1d-9f3a-0b8e6d2c000{index}",
            model=H100,
            utilization=98.0,
            tensor_active=0.52,  # "0.520000" parses to exactly 0.52
            sm_active=None,  # the fixtures export no DCGM_FI_PROF_SM_ACTIVE (off by default)
            fb_used_mib=75437.0,
            fb_free_mib=6123.0,
            xid=0,
        )
        assert sample.memory_ratio == pytest.approx(75437 / 81560)


def test_gpus_of_no_pod_or_of_another_pod_are_not_this_pods() -> None:
    text = _fixture("h100-healthy.prom")
    assert gpu_samples_from_exposition(text, POD, "team-b", NOW) == []
    assert gpu_samples_from_exposition(text, "lr-warmup-2-train-0-other", NAMESPACE, NOW) == []
    assert gpu_samples_from_exposition(text, "", "", NOW) == [], "unlabelled is not a pod ''"


def test_the_starved_fixture_reads_low_utilization_and_an_idle_tensor_pipe() -> None:
    samples = _pod_samples(_fixture("h100-starved.prom"))
    assert sorted(samples) == ["0", "1"]
    assert (samples["0"].utilization, samples["1"].utilization) == (23.0, 19.0)
    assert (samples["0"].tensor_active, samples["1"].tensor_active) == pytest.approx((0.04, 0.03))
    assert all(s.utilization is not None and s.utilization < 25 for s in samples.values())


def test_the_xid79_fixture_reports_xid_79_on_gpu_1_with_the_newer_hostname_label() -> None:
    text = _fixture("h100-xid79.prom")
    assert "Hostname=" not in text, "this fixture is the newer spelling"
    samples = _pod_samples(text)
    assert (samples["0"].xid, samples["1"].xid) == (0, 79)
    assert samples["1"].utilization == 0.0
    assert samples["1"].uuid == "GPU-5a1c0001-7e2b-4c1d-9f3a-0b8e6d2c0001"
    assert node_of(text, POD, NAMESPACE) == "gpu-node-a17"


def test_both_hostname_spellings_name_the_node() -> None:
    assert node_of(_fixture("h100-healthy.prom"), POD, NAMESPACE) == "gpu-node-a17"
    assert node_of(_fixture("h100-healthy.prom"), POD, "team-b") is None
    assert hostname_of({"Hostname": "old"}) == "old"
    assert hostname_of({"hostname": "new"}) == "new"
    assert hostname_of({"Hostname": "", "hostname": "new"}) == "new"
    assert hostname_of({"gpu": "0"}) is None


def test_exported_pod_and_namespace_select_the_same_gpus() -> None:
    text = _fixture("h100-healthy.prom")
    exported = _exported(text)
    assert 'exported_pod="lr-warmup' in exported
    assert ',pod="lr-warmup' not in exported
    assert _pod_samples(exported) == _pod_samples(text)
    # Scraped through a ServiceMonitor: the plain names are the exporter's own pod.
    via_monitor = exported.replace(
        'exported_container="trainer"',
        'container="dcgm-exporter",namespace="gpu-operator",pod="dcgm-exporter-9tq4d",'
        'exported_container="trainer"',
    )
    assert _pod_samples(via_monitor) == _pod_samples(text)


def test_the_two_label_spellings_are_never_mixed() -> None:
    line = 'DCGM_FI_DEV_GPU_UTIL{{gpu="0",{labels}}} 50\n'
    mixed = line.format(labels='pod="p",namespace="gpu-operator",exported_namespace="ns"')
    assert gpu_samples_from_exposition(mixed, "p", "ns", NOW) == []
    plain = line.format(labels='pod="p",namespace="ns"')
    assert [s.utilization for s in gpu_samples_from_exposition(plain, "p", "ns", NOW)] == [50.0]


def test_without_profiling_fields_tensor_and_sm_are_none_and_the_rest_is_read() -> None:
    lines = _fixture("h100-healthy.prom").splitlines(keepends=True)
    text = "".join(line for line in lines if "DCGM_FI_PROF_" not in line)
    samples = _pod_samples(text)
    assert sorted(samples) == ["0", "1"]
    for sample in samples.values():
        assert sample.tensor_active is None
        assert sample.sm_active is None
        assert sample.utilization == 98.0
        assert (sample.fb_used_mib, sample.fb_free_mib, sample.xid) == (75437.0, 6123.0, 0)
        assert sample.model == H100


MIG = """\
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",\
GPU_I_PROFILE="3g.40gb",GPU_I_ID="1",Hostname="n1",container="c",namespace="ns",pod="p"} 30000
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",\
GPU_I_PROFILE="3g.40gb",GPU_I_ID="2",Hostname="n1",container="c",namespace="ns",pod="p"} 1000
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",\
GPU_I_PROFILE="1g.10gb",GPU_I_ID="9",Hostname="n1",container="c",namespace="ns",pod="other"} 5
DCGM_FI_DEV_FB_USED{gpu="10",UUID="GPU-k",device="nvidia10",modelName="NVIDIA A100-SXM4-80GB",\
GPU_I_PROFILE="",GPU_I_ID="",Hostname="n1",container="c",namespace="ns",pod="p"} 70000
DCGM_FI_DEV_FB_USED{gpu="2",UUID="GPU-c",device="nvidia2",modelName="NVIDIA A100-SXM4-80GB",\
Hostname="n1",container="c",namespace="ns",pod="p"} 60000
# HELP DCGM_FI_PROF_PIPE_TENSOR_ACTIVE Ratio of cycles the tensor (HMMA) pipe is active.
# TYPE DCGM_FI_PROF_PIPE_TENSOR_ACTIVE gauge
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{gpu="0",UUID="GPU-a",device="nvidia0",\
modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="3g.40gb",GPU_I_ID="1",Hostname="n1",\
container="c",namespace="ns",pod="p"} 0.45
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{gpu="0",UUID="GPU-a",device="nvidia0",\
modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="3g.40gb",GPU_I_ID="2",Hostname="n1",\
container="c",namespace="ns",pod="p"} 0.01
"""


def test_mig_instances_are_samples_of_their_own_in_gpu_order() -> None:
    samples = gpu_samples_from_exposition(MIG, "p", "ns", NOW)
    assert [s.gpu for s in samples] == ["0/1", "0/2", "2", "10"], "empty GPU_I_ID: whole GPU"
    first, second = samples[0], samples[1]
    assert (first.fb_used_mib, first.tensor_active) == (30000.0, 0.45)
    assert (second.fb_used_mib, second.tensor_active) == (1000.0, 0.01)
    assert first.utilization is None, "DCGM has no GPU_UTIL for MIG instances"
    assert (first.uuid, first.model) == ("GPU-a", "NVIDIA A100-SXM4-80GB")
    assert samples[3].fb_used_mib == 70000.0
    assert [s.gpu for s in gpu_samples_from_exposition(MIG, "other", "ns", NOW)] == ["0/9"]


def test_a_malformed_exposition_is_a_value_error_that_names_the_line() -> None:
    good = _fixture("h100-starved.prom").splitlines()
    bad = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",pod="' + "x" * 500 + "} 98"  # unclosed quote
    text = "\n".join([*good[:5], bad, *good[5:]])
    with pytest.raises(ValueError, match="malformed exposition at line 6") as caught:
        gpu_samples_from_exposition(text, POD, NAMESPACE, NOW)
    assert "x" * 200 not in str(caught.value), "quotes at most 200 characters"
    with pytest.raises(ValueError, match="line 1"):
        gpu_samples_from_exposition("<html><body>502 Bad Gateway</body></html>", "p", "n", NOW)
    with pytest.raises(ValueError, match="line 2"):
        gpu_samples_from_exposition('DCGM_FI_DEV_GPU_UTIL{gpu="0"} 1\nDCGM x y', "p", "n", NOW)
    assert gpu_samples_from_exposition("", "p", "n", NOW) == []


def _result(metric: str, value: str, **labels: str) -> dict[str, Any]:
    return {"metric": {"__name__": metric, **labels}, "value": [NOW - 3.0, value]}


GPU0 = {"gpu": "0", "UUID": "GPU-0", "modelName": H100, "hostname": "n1"}
GPU1 = {"gpu": "1", "UUID": "GPU-1", "modelName": H100, "Hostname": "n1"}
EXPORTED = {"exported_pod": POD, "exported_namespace": NAMESPACE}
PLAIN = {"pod": POD, "namespace": NAMESPACE}


def test_prometheus_results_are_read_under_both_label_spellings() -> None:
    results = {
        "DCGM_FI_DEV_GPU_UTIL": [
            _result("DCGM_FI_DEV_GPU_UTIL", "97", **GPU0, **EXPORTED, pod="dcgm-exporter-9tq4d"),
            _result("DCGM_FI_DEV_GPU_UTIL", "NaN", **GPU1, **PLAIN),
            _result("DCGM_FI_DEV_GPU_UTIL", "5", gpu="2", pod="someone", namespace=NAMESPACE),
        ],
        "DCGM_FI_DEV_XID_ERRORS": [
            _result("DCGM_FI_DEV_XID_ERRORS", "0", **GPU0, **EXPORTED),
            _result("DCGM_FI_DEV_XID_ERRORS", "79", **GPU1, **PLAIN),
        ],
        "DCGM_FI_DEV_FB_USED": [_result("DCGM_FI_DEV_FB_USED", "1024", **GPU0, **EXPORTED)],
    }
    samples = gpu_samples_from_prometheus(results, POD, NAMESPACE, NOW)
    assert [s.gpu for s in samples] == ["0", "1"]
    assert samples[0] == GpuSample(
        time=NOW, gpu="0", uuid="GPU-0", model=H100, utilization=97.0, fb_used_mib=1024.0, xid=0
    )
    assert samples[1].xid == 79
    assert samples[1].fb_used_mib is None
    assert samples[1].utilization != samples[1].utilization, "NaN is read, not dropped"


def test_a_malformed_prometheus_result_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="malformed Prometheus result for DCGM_FI_DEV_GPU_UTIL"):
        gpu_samples_from_prometheus(
            {"DCGM_FI_DEV_GPU_UTIL": [{"metric": GPU0, "value": [1.0]}]}, POD, NAMESPACE, NOW
        )
    with pytest.raises(ValueError, match="malformed"):
        gpu_samples_from_prometheus(
            {"DCGM_FI_DEV_GPU_UTIL": [{"metric": GPU0, "value": [1.0, "lots"]}]}, "p", "n", NOW
        )


def test_the_promql_selects_either_spelling_and_escapes_values() -> None:
    assert prometheus_query("DCGM_FI_DEV_GPU_UTIL", "x", "y") == (
        'DCGM_FI_DEV_GPU_UTIL{pod="x",namespace="y"} or '
        'DCGM_FI_DEV_GPU_UTIL{exported_pod="x",exported_namespace="y"}'
    )
    query = prometheus_query("DCGM_FI_DEV_XID_ERRORS", 'a"b\\c', "n\nm")
    assert 'pod="a\\"b\\\\c",namespace="n\\nm"' in query
    assert 'exported_pod="a\\"b\\\\c",exported_namespace="n\\nm"' in query
    with pytest.raises(ValueError, match="metric name"):
        prometheus_query('up{job="x"}', "p", "n")


Handler = Callable[[BaseHTTPRequestHandler], tuple[int, str, str]]


@contextmanager
def _serve(handle: Handler) -> Iterator[str]:
    """A local HTTP server in a thread; `handle` gives (status, content type, body)."""

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = handle(self)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _exporter(text: str) -> Handler:
    def handle(request: BaseHTTPRequestHandler) -> tuple[int, str, str]:
        if request.path == "/metrics":
            return 200, "text/plain; version=0.0.4", text
        return 404, "text/plain", "404 page not found"

    return handle


def test_read_exporter_scrapes_the_metrics_endpoint() -> None:
    with _serve(_exporter(_fixture("h100-xid79.prom"))) as url:
        samples = read_exporter(f"{url}/metrics", POD, NAMESPACE)
        with pytest.raises(DcgmUnavailable, match="HTTP 404: 404 page not found"):
            read_exporter(f"{url}/nothing", POD, NAMESPACE)
    assert [(s.gpu, s.xid) for s in samples] == [("0", 0), ("1", 79)]


def test_read_exporter_turns_a_body_that_is_no_exposition_into_dcgm_unavailable() -> None:
    no_exposition = pytest.raises(DcgmUnavailable, match=r"did not answer an exposition.*line 1")
    with _serve(_exporter("<html>login required</html>")) as url, no_exposition:
        read_exporter(f"{url}/metrics", POD, NAMESPACE)


def _prometheus_api(answers: dict[str, list[dict[str, Any]]], seen: list[str]) -> Handler:
    """Answers `/api/v1/query` as Prometheus does, for exactly the queries dcgm.py sends."""

    def handle(request: BaseHTTPRequestHandler) -> tuple[int, str, str]:
        parts = urllib.parse.urlsplit(request.path)
        assert parts.path == "/prom/api/v1/query"
        [query] = urllib.parse.parse_qs(parts.query)["query"]
        seen.append(query)
        metric = next(m for m in DCGM_METRICS if query == prometheus_query(m, POD, NAMESPACE))
        body = {"status": "success", "data": {"resultType": "vector", "result": answers[metric]}}
        return 200, "application/json", json.dumps(body)

    return handle


def test_read_prometheus_queries_every_field_and_skips_the_empty_ones() -> None:
    answers: dict[str, list[dict[str, Any]]] = {metric: [] for metric in DCGM_METRICS}
    answers["DCGM_FI_DEV_GPU_UTIL"] = [_result("DCGM_FI_DEV_GPU_UTIL", "21", **GPU0, **EXPORTED)]
    answers["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"] = [
        _result("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "0.04", **GPU0, **EXPORTED)
    ]
    seen: list[str] = []
    with _serve(_prometheus_api(answers, seen)) as url:
        [sample] = read_prometheus(f"{url}/prom/", POD, NAMESPACE)
    assert len(seen) == len(DCGM_METRICS)
    assert (sample.gpu, sample.utilization, sample.tensor_active) == ("0", 21.0, 0.04)
    assert sample.sm_active is None
    assert sample.xid is None


def test_read_prometheus_reports_the_servers_error() -> None:
    failure = {"status": "error", "errorType": "bad_data", "error": "parse error at char 7"}

    def refuse(request: BaseHTTPRequestHandler) -> tuple[int, str, str]:
        return 400, "application/json", json.dumps(failure)

    def odd(request: BaseHTTPRequestHandler) -> tuple[int, str, str]:
        return 200, "application/json", json.dumps(failure)

    refused = pytest.raises(DcgmUnavailable, match=r"HTTP 400.*parse error at char 7")
    with _serve(refuse) as url, refused:
        read_prometheus(url, POD, NAMESPACE)
    failed = pytest.raises(DcgmUnavailable, match="bad_data: parse error at char 7")
    with _serve(odd) as url, failed:
        read_prometheus(url, POD, NAMESPACE)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_source_is_dcgm_unavailable() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DcgmUnavailable, match="cannot reach"):
        read_exporter(f"{url}/metrics", POD, NAMESPACE, timeout=2)
    with pytest.raises(DcgmUnavailable, match="cannot reach"):
        read_prometheus(url, POD, NAMESPACE, timeout=2)
    with pytest.raises(DcgmUnavailable, match="not an http"):
        read_exporter("file:///etc/passwd", POD, NAMESPACE)


@pytest.mark.slow
def test_a_real_prometheus_answers_the_queries_under_both_spellings(tmp_path: Path) -> None:
    from tests.support.prometheus import prometheus

    # GPU 0 as the exporter labels it, GPU 1 as it arrives with honorLabels false.
    lines = _fixture("h100-xid79.prom").splitlines(keepends=True)
    text = "".join(_exported(line) if 'gpu="1"' in line else line for line in lines)
    with _serve(_exporter(text)) as url, prometheus(tmp_path, [url.removeprefix("http://")]) as p:
        p.wait_for(f'DCGM_FI_DEV_XID_ERRORS{{exported_pod="{POD}"}}')
        samples = read_prometheus(p.url, POD, NAMESPACE)
    assert [(s.gpu, s.xid, s.utilization) for s in samples] == [("0", 0, 98.0), ("1", 79, 0.0)]
    assert samples[0].tensor_active == pytest.approx(0.52)
    assert samples[0].sm_active is None
    assert samples[1].uuid == "GPU-5a1c0001-7e2b-4c1d-9f3a-0b8e6d2c0001"
