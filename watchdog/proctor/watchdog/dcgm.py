"""The GPUs of this pod, as DCGM sees them: read from a dcgm-exporter's `/metrics` directly or
from a Prometheus server's HTTP API, and reduced to one `GpuSample` per GPU (or MIG instance).

Both paths apply the same rules, so a detector cannot tell which one fed it:
- a series belongs to this pod when `pod`/`namespace` name it, or `exported_pod`/
  `exported_namespace` do (what Prometheus writes when honorLabels is false and the exporter's own
  pod labels take the plain names); the pairs are never mixed;
- the GPU is the `gpu` label, or `"{gpu}/{GPU_I_ID}"` for a MIG instance;
- a field the exporter does not export stays None: profiling fields (`DCGM_FI_PROF_*`) are off
  by default, and MIG instances have no `DCGM_FI_DEV_GPU_UTIL`;
- the node comes from `Hostname` (older exporters) or `hostname` (newer ones);
- a value that is no reading (infinite, negative) is read as NaN, which no detector judges.

Anything a source answers that is not what it should be (an error page, truncated JSON, results
of the wrong shape, more than MAX_ANSWER_BYTES) is DcgmUnavailable, never another exception: the
watchdog records the gap and says so, and judges from the trainer's metrics meanwhile.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from proctor.watchdog.observations import GpuSample

# The DCGM fields the watchdog reads, and the GpuSample field each one fills.
DCGM_FIELDS: dict[str, str] = {
    "DCGM_FI_DEV_GPU_UTIL": "utilization",  # percent 0-100
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor_active",  # ratio 0-1, profiling (may be off)
    "DCGM_FI_PROF_SM_ACTIVE": "sm_active",  # ratio 0-1, profiling (off by default)
    "DCGM_FI_DEV_FB_USED": "fb_used_mib",
    "DCGM_FI_DEV_FB_FREE": "fb_free_mib",
    "DCGM_FI_DEV_XID_ERRORS": "xid",  # the last XID seen
}
DCGM_METRICS: tuple[str, ...] = tuple(DCGM_FIELDS)

_QUOTE_LIMIT = 200  # how much of a malformed input an error message quotes
MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""The most of one answer read: an exporter on a 16-GPU node answers a few hundred KiB."""
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

# (metric name, labels, value): what both sources reduce to before samples are built.
_Series = tuple[str, Mapping[str, str], float]


class DcgmUnavailable(Exception):  # noqa: N818 (the name the watchdog's loop catches)
    """No DCGM reading this time: the source did not answer, refused, or answered nonsense.
    The watchdog records the gap and tries again; it is never a finding about the training."""


def hostname_of(labels: Mapping[str, str]) -> str | None:
    """The node of a series: dcgm-exporter renamed `Hostname` to `hostname`; accept both."""
    return labels.get("Hostname") or labels.get("hostname") or None


def is_pod_series(labels: Mapping[str, str], pod: str, namespace: str) -> bool:
    """Whether a series is about this pod, under either label spelling (pairs never mixed)."""
    return (labels.get("pod") == pod and labels.get("namespace") == namespace) or (
        labels.get("exported_pod") == pod and labels.get("exported_namespace") == namespace
    )


def gpu_key(labels: Mapping[str, str]) -> str | None:
    """`"0"` for GPU 0, `"0/1"` for its MIG instance 1; None when the series names no GPU.
    A missing or empty `GPU_I_ID` means the whole GPU."""
    gpu = labels.get("gpu")
    if not gpu:
        return None
    instance = labels.get("GPU_I_ID")
    return f"{gpu}/{instance}" if instance else gpu


def gpu_samples_from_exposition(text: str, pod: str, namespace: str, now: float) -> list[GpuSample]:
    """This pod's GPUs in a dcgm-exporter exposition (the exporter reports every GPU of the
    node; those of other pods and the unassigned ones are dropped)."""
    return _samples(_exposition_series(text), pod, namespace, now)


def node_of(text: str, pod: str, namespace: str) -> str | None:
    """The node this pod's GPUs are on, from an exposition's `Hostname`/`hostname` label:
    context for a bundle (an XID names a GPU on a node, not in the abstract)."""
    for _, labels, _ in _exposition_series(text):
        if is_pod_series(labels, pod, namespace) and (host := hostname_of(labels)):
            return host
    return None


def gpu_samples_from_prometheus(
    vector_results: Mapping[str, list[dict[str, Any]]], pod: str, namespace: str, now: float
) -> list[GpuSample]:
    """This pod's GPUs from Prometheus instant queries: `data.result` of each query, by the
    metric it asked for. Series of other pods are dropped here too, so a broad query is safe.
    Raises ValueError for an item that is not `{"metric": {...}, "value": [ts, "v"]}`."""
    series: list[_Series] = []
    for metric, results in vector_results.items():
        if not isinstance(results, list):
            raise ValueError(f"malformed Prometheus result for {metric}: {_shown(results)}")
        for item in results:
            try:
                labels = item["metric"]
                value = float(item["value"][1])
                if not isinstance(labels, dict):
                    raise TypeError("metric is not an object")
                if not all(isinstance(v, str) for v in labels.values()):
                    raise TypeError("a label value is not a string")
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise ValueError(
                    f"malformed Prometheus result for {metric}: {_shown(item)}"
                ) from error
            series.append((metric, labels, value))
    return _samples(series, pod, namespace, now)


def prometheus_query(metric: str, pod: str, namespace: str) -> str:
    """PromQL for this pod's series of `metric` under both label spellings: `pod`/`namespace`
    when Prometheus honours the exporter's labels, `exported_*` when it does not."""
    if not _METRIC_NAME.fullmatch(metric):
        raise ValueError(f"not a Prometheus metric name: {_quote(metric)}")
    p, n = _promql_string(pod), _promql_string(namespace)
    return (
        f"{metric}{{pod={p},namespace={n}}} or {metric}{{exported_pod={p},exported_namespace={n}}}"
    )


def read_exporter(url: str, pod: str, namespace: str, timeout: float = 5.0) -> list[GpuSample]:
    """One scrape of a dcgm-exporter (`http://<node>:9400/metrics`). Raises DcgmUnavailable when
    it does not answer, answers other than 200, or answers something that is not an exposition."""
    text = _get(url, timeout).decode("utf-8", errors="replace")
    try:
        return gpu_samples_from_exposition(text, pod, namespace, time.time())
    except ValueError as error:
        raise DcgmUnavailable(f"{url} did not answer an exposition: {error}") from error


def read_prometheus(
    base_url: str, pod: str, namespace: str, timeout: float = 5.0
) -> list[GpuSample]:
    """One instant query per DCGM field against a Prometheus server (`base_url` without
    `/api/v1`). A field no series answers is left out (None in the samples), not an error.
    Raises DcgmUnavailable when the server does not answer or reports an error."""
    base = base_url.rstrip("/")
    results: dict[str, list[dict[str, Any]]] = {}
    for metric in DCGM_METRICS:
        query = urllib.parse.urlencode({"query": prometheus_query(metric, pod, namespace)})
        url = f"{base}/api/v1/query?{query}"
        try:
            body = json.loads(_get(url, timeout))
        except (ValueError, RecursionError) as error:  # also UnicodeDecodeError
            raise DcgmUnavailable(f"Prometheus at {base} answered no JSON for {metric}") from error
        if not isinstance(body, dict) or body.get("status") != "success":
            raise DcgmUnavailable(f"Prometheus at {base} failed {metric}: {_api_error(body)}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise DcgmUnavailable(
                f"Prometheus at {base} answered no instant vector for {metric}: {_shown(data)}"
            )
        if data.get("result"):
            results[metric] = data["result"]
    try:
        return gpu_samples_from_prometheus(results, pod, namespace, time.time())
    except ValueError as error:
        raise DcgmUnavailable(f"Prometheus at {base}: {error}") from error


def _samples(series: Iterable[_Series], pod: str, namespace: str, now: float) -> list[GpuSample]:
    """Group this pod's series of the DCGM fields by GPU, one sample each, in GPU order."""
    gpus: dict[str, dict[str, Any]] = {}
    for name, labels, value in series:
        field = DCGM_FIELDS.get(name)
        if field is None or not is_pod_series(labels, pod, namespace):
            continue
        key = gpu_key(labels)
        if key is None:
            continue
        fields = gpus.setdefault(key, {"uuid": None, "model": None})
        fields["uuid"] = fields["uuid"] or labels.get("UUID") or None
        fields["model"] = fields["model"] or labels.get("modelName") or None
        if field == "xid":
            fields[field] = int(value) if math.isfinite(value) else None
        else:
            fields[field] = float(value) if math.isfinite(value) and value >= 0 else math.nan
    return [GpuSample(time=now, gpu=key, **gpus[key]) for key in sorted(gpus, key=_gpu_order)]


def _gpu_order(key: str) -> tuple[tuple[int, str], ...]:
    """ "2" before "10", "0/2" before "0/10": numbers compare as numbers."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in key.split("/"))


def _exposition_series(text: str) -> list[_Series]:
    """Every sample of an exposition, parsed by prometheus_client. Raises ValueError naming the
    first line that does not parse."""
    try:
        return [
            (sample.name, sample.labels, float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]
    except (ValueError, IndexError, KeyError, TypeError) as error:
        raise ValueError(_malformed(text, error)) from error


def _malformed(text: str, error: Exception) -> str:
    """Which line broke the parse (the parser's own message does not say)."""
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            for _ in text_string_to_metric_families(line):
                pass
        except (ValueError, IndexError, KeyError, TypeError) as line_error:
            detail = _quote(str(line_error))
            return f"malformed exposition at line {number}: {_quote(line)} ({detail})"
    return f"malformed exposition: {_quote(str(error)) or type(error).__name__}"


def _get(url: str, timeout: float) -> bytes:
    """The body of a 200 answer; anything else is DcgmUnavailable with the reason."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DcgmUnavailable(f"not an http(s) URL: {_quote(url)}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
            body: bytes = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as error:
        detail = _quote(error.read().decode("utf-8", errors="replace"))
        raise DcgmUnavailable(f"{url} answered HTTP {error.code}: {detail}") from error
    except urllib.error.URLError as error:
        raise DcgmUnavailable(f"cannot reach {url}: {error.reason}") from error
    except (OSError, http.client.HTTPException) as error:
        raise DcgmUnavailable(f"cannot read {url}: {error!r}") from error
    if status != 200:
        raise DcgmUnavailable(f"{url} answered HTTP {status}, not 200")
    if len(body) > MAX_ANSWER_BYTES:
        raise DcgmUnavailable(f"{url} answered more than {MAX_ANSWER_BYTES // 2**20} MiB")
    return body


def _api_error(body: object) -> str:
    """Prometheus' own words for a failed query (`errorType: error`), else the body."""
    if isinstance(body, dict) and "error" in body:
        return _quote(f"{body.get('errorType', 'error')}: {_shown(body['error'])}")
    return _shown(body)


def _shown(value: object) -> str:
    """`value` as JSON, quoted; a value too deep to write out is named, not written."""
    try:
        return _quote(value if isinstance(value, str) else json.dumps(value))
    except (RecursionError, ValueError, TypeError):
        return f"<a {type(value).__name__} too deep to show>"


def _promql_string(value: str) -> str:
    """A double-quoted PromQL string literal (Go escaping rules)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _quote(text: str) -> str:
    """At most the first 200 characters, so a huge bad answer cannot flood a log line."""
    return text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "..."
