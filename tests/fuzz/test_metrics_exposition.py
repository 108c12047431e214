"""What the watchdog scrapes is not always what the exporter meant: garbage, truncated lines, NaN
and infinities, huge label values, duplicate series, the wrong content type, a 10 MB answer, an
HTML error page. The watchdog must neither crash nor raise a false anomaly over a healthy run,
and says it degraded where a source is unusable (DCGM: a WatchdogDegraded note; the trainer: the
sample's `unreadable`).

Three levels: the parsers alone (thousands of texts), a healthy run whose scrapes are corrupted
at random judged by the real detectors, and the real `Watchdog.check()` against a real HTTP
server that answers badly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from proctor.api.v1alpha1.experiment import WatchdogSpec, WatchdogThresholds
from proctor.watchdog import dcgm
from proctor.watchdog.detectors import detect_all
from proctor.watchdog.observations import Context, Window
from proctor.watchdog.runner import Watchdog, WatchdogConfig
from proctor.watchdog.trainer import MAX_SCRAPE_BYTES, parse_trainer, read_trainer
from tests.fuzz.examples import examples
from tests.fuzz.manifests import hostile_text
from tests.support.crd_schema import REPO

EXPERIMENT, NAMESPACE = "exp", "ml"
POD, POD_NAMESPACE = "lr-warmup-2-train-0-x7k2p", "team-a"  # the DCGM fixtures' pod
GAUGES = (
    "proctor_train_step",
    "proctor_train_loss",
    "proctor_train_samples_per_second",
    "proctor_train_tokens_per_second",
    "proctor_train_mfu_ratio",
    "proctor_train_step_duration_seconds",
    "proctor_train_last_checkpoint_timestamp_seconds",
    "proctor_train_last_checkpoint_step",
)


def _fixture(name: str) -> str:
    for shared in (REPO.parent / "shared", REPO / "shared"):
        path = shared / "fixtures" / "dcgm" / name
        if path.exists():
            return path.read_text()
    raise AssertionError(f"DCGM fixture {name} is missing (../shared/fixtures/dcgm)")


HEALTHY_DCGM = _fixture("h100-healthy.prom")
HEALTHY_GPUS = dcgm.gpu_samples_from_exposition(HEALTHY_DCGM, POD, POD_NAMESPACE, 0.0)


def trainer_text(values: dict[str, float], experiment: str = EXPERIMENT) -> str:
    """A trainer's /metrics as prometheus_client writes it."""
    lines = []
    for name in GAUGES:
        lines += [f"# HELP {name} {name}.", f"# TYPE {name} gauge"]
        labels = f'{{experiment="{experiment}",namespace="{NAMESPACE}"}}'
        lines.append(f"{name}{labels} {_number(values.get(name, 0.0))}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


# ---- the parsers alone -----------------------------------------------------------------------

_LINE = st.one_of(
    st.sampled_from(GAUGES).flatmap(
        lambda name: st.builds(
            lambda labels, value: f"{name}{labels} {value}",
            st.sampled_from(
                [
                    f'{{experiment="{EXPERIMENT}",namespace="{NAMESPACE}"}}',
                    '{experiment="exp",namespace="ml",huge="' + "x" * 5000 + '"}',
                    '{experiment="exp"',
                    '{experiment="exp",namespace="ml",="x"}',
                    '{experiment="\u202eexp\x00",namespace="ml"}',
                    "",
                ]
            ),
            st.one_of(
                st.sampled_from(["NaN", "+Inf", "-Inf", "-1", "1e308", "1e999", "0x10", "1 2"]),
                st.floats().map(repr),
                st.integers().map(str),
            ),
        )
    ),
    st.sampled_from(["# TYPE proctor_train_step nonsense", "# EOF", "# HELP", "#", "{", "}"]),
    hostile_text(longest=4097),
)
TEXTS = st.one_of(
    st.lists(_LINE, max_size=12).map("\n".join),
    st.lists(_LINE, max_size=12).map(lambda lines: "\n".join(lines) + "\n"),
    st.sampled_from([trainer_text({g: 1.0 for g in GAUGES}), HEALTHY_DCGM]).flatmap(
        lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])
    ),
    st.just("<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
    st.binary(max_size=200).map(lambda b: b.decode(errors="replace")),
)


@settings(max_examples=examples(700))
@given(text=TEXTS)
def test_the_trainer_parser_reads_anything_into_sane_values(text):
    sample = parse_trainer(text, EXPERIMENT, NAMESPACE, now=1.0)
    assert sample.reachable
    if sample.step is not None:
        assert 0 < sample.step < 2**63
    for value in (
        sample.samples_per_second,
        sample.tokens_per_second,
        sample.mfu,
        sample.step_seconds,
        sample.last_checkpoint_time,
    ):
        assert value is None or (math.isfinite(value) and value >= 0), sample
    if sample.unreadable is not None:
        assert len(sample.unreadable) < 400, "a note quotes, it does not copy"


@settings(max_examples=examples(400))
@given(text=TEXTS)
def test_the_dcgm_parser_reads_anything_or_says_it_is_malformed(text):
    try:
        samples = dcgm.gpu_samples_from_exposition(text, POD, POD_NAMESPACE, 1.0)
    except ValueError as malformed:
        samples, problem = [], str(malformed)
    else:
        problem = "malformed"
    assert "malformed" in problem
    for sample in samples:
        for value in (sample.utilization, sample.fb_used_mib, sample.fb_free_mib):
            assert value is None or math.isnan(value) or (math.isfinite(value) and value >= 0)


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), hostile_text(longest=64)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=6,
)
_RESULT_ITEM = st.one_of(
    _JSON,
    st.fixed_dictionaries(
        {
            "metric": st.one_of(
                st.just({"gpu": "0", "pod": POD, "namespace": POD_NAMESPACE}),
                st.dictionaries(st.sampled_from(["gpu", "pod", "namespace", "UUID"]), _JSON),
            ),
            "value": st.one_of(st.tuples(st.floats(), st.sampled_from(["1", "NaN", "x"])), _JSON),
        }
    ),
)


@settings(max_examples=examples(250))
@given(
    results=st.dictionaries(
        st.sampled_from(dcgm.DCGM_METRICS), st.one_of(st.lists(_RESULT_ITEM, max_size=5), _JSON)
    )
)
def test_prometheus_results_of_any_shape_are_read_or_malformed(results):
    problem = "malformed Prometheus result"
    try:
        dcgm.gpu_samples_from_prometheus(results, POD, POD_NAMESPACE, 1.0)
    except ValueError as malformed:
        problem = str(malformed)
    assert "malformed Prometheus result" in problem


# ---- a healthy run, scraped badly ------------------------------------------------------------

SCRAPE_SECONDS = 30.0
START = 1_790_000_000.0


def _healthy(i: int) -> dict[str, float]:
    """Scrape i of a healthy run: 2 steps/s, a loss that falls smoothly, steady rates, a
    checkpoint every 10 minutes."""
    t = i * SCRAPE_SECONDS
    step = 60 * (i + 1)
    checkpoint = 600.0 * math.floor(t / 600.0)
    return {
        "proctor_train_step": step,
        "proctor_train_loss": 0.1 + 2.0 * math.exp(-step / 3000),
        "proctor_train_samples_per_second": 128.0,
        "proctor_train_tokens_per_second": 65536.0,
        "proctor_train_mfu_ratio": 0.41,
        "proctor_train_step_duration_seconds": 0.5,
        "proctor_train_last_checkpoint_timestamp_seconds": START + checkpoint if t >= 600 else 0,
        "proctor_train_last_checkpoint_step": 120 * math.floor(t / 600.0) if t >= 600 else 0,
    }


Corruption = Callable[[str, dict[str, float]], str]

_HTML = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>\n"
CORRUPTIONS: dict[str, Any] = {
    "garbage": hostile_text().map(lambda junk: lambda text, values: junk),
    "html": st.just(lambda text, values: _HTML),
    "empty": st.just(lambda text, values: ""),
    "truncated": st.floats(0, 1).map(lambda f: lambda text, values: text[: int(len(text) * f)]),
    "non-finite gauge": st.tuples(
        st.sampled_from([g for g in GAUGES if g != "proctor_train_loss"]),
        st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 1e308]),
    ).map(lambda c: lambda text, values: trainer_text({**values, c[0]: c[1]})),
    "huge label": st.sampled_from([1000, 100_000, 2_000_000]).map(
        lambda n: (
            lambda text, values: text.replace(
                'namespace="ml"}', f'namespace="ml",note="{"é" * n}"}}', 1
            )
        )
    ),
    "duplicate series": st.just(lambda text, values: text + text),
    "other experiment": st.just(
        lambda text, values: text + trainer_text({g: -5.0 for g in GAUGES}, "someone-else")
    ),
    "garbled line": st.tuples(st.integers(0, 10**6), hostile_text()).map(
        lambda c: lambda text, values: _garble(text, *c)
    ),
    "openmetrics": st.just(lambda text, values: text + "# EOF\n"),
}


def _garble(text: str, where: int, junk: str) -> str:
    lines = text.splitlines()
    index = where % len(lines)
    lines[index] = lines[index][: len(lines[index]) // 2] + junk.replace("\n", " ")
    return "\n".join(lines) + "\n"


@st.composite
def _scrapes(draw: st.DrawFn, count: int) -> list[tuple[str, Any, str, Any]]:
    """Per scrape: (trainer corruption name, function, DCGM corruption name, function), at most
    three corrupted scrapes in a row (a longer silence is the trainer-gone detector's job)."""
    plan, run = [], 0
    for _ in range(count):
        corrupt = run < 3 and draw(st.integers(0, 2)) == 0
        if corrupt:
            name = draw(st.sampled_from(sorted(CORRUPTIONS)))
            gpu_name = draw(st.sampled_from(sorted(CORRUPTIONS)))
            plan.append((name, draw(CORRUPTIONS[name]), gpu_name, draw(CORRUPTIONS[gpu_name])))
            run += 1
        else:
            plan.append(("none", None, "none", None))
            run = 0
    return plan


@settings(max_examples=examples(25))
@given(plan=_scrapes(40))
def test_a_healthy_run_scraped_badly_raises_no_anomaly(plan):
    window, thresholds = Window(), WatchdogThresholds()
    for i, (name, corrupt, gpu_name, gpu_corrupt) in enumerate(plan):
        now = START + i * SCRAPE_SECONDS
        values = _healthy(i)
        text = trainer_text(values)
        window.add_trainer(
            parse_trainer(corrupt(text, values) if corrupt else text, EXPERIMENT, NAMESPACE, now)
        )
        if gpu_corrupt is None:
            window.add_gpus([dataclasses.replace(g, time=now) for g in HEALTHY_GPUS])
        with contextlib.suppress(ValueError):  # DcgmUnavailable in the watchdog: a noted gap
            if gpu_corrupt is not None:
                gpu_text = gpu_corrupt(HEALTHY_DCGM, values)
                window.add_gpus(dcgm.gpu_samples_from_exposition(gpu_text, POD, POD_NAMESPACE, now))
        context = Context(
            now=now, started=START, warmup_seconds=300.0, checkpoint_every_seconds=600.0
        )
        findings = detect_all(window, thresholds, context, plateau=False)
        note(f"scrape {i}: trainer {name}, dcgm {gpu_name}")
        assert findings == [], [f.message for f in findings]


def test_the_healthy_run_itself_is_judged_healthy_and_a_real_fault_is_still_seen():
    """The two controls of the test above: unscraped badly, nothing; a loss that really turns
    NaN, a finding (so an empty list above means no false alarm, not a blind judge)."""
    window, thresholds = Window(), WatchdogThresholds()
    findings = []
    for i in range(50):
        now = START + i * SCRAPE_SECONDS
        values = _healthy(i)
        if i >= 40:
            values["proctor_train_loss"] = math.nan
        window.add_trainer(parse_trainer(trainer_text(values), EXPERIMENT, NAMESPACE, now))
        window.add_gpus(dcgm.gpu_samples_from_exposition(HEALTHY_DCGM, POD, POD_NAMESPACE, now))
        context = Context(
            now=now, started=START, warmup_seconds=300.0, checkpoint_every_seconds=600.0
        )
        found = detect_all(window, thresholds, context, plateau=False)
        assert i >= 40 or found == [], [f.message for f in found]
        findings += found
    assert {f.kind.value for f in findings} == {"NonFiniteLoss"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # An infinite step raised OverflowError out of the parser: the whole check failed
        # (no GPU read, no judgement) for as long as the gauge said so.
        (trainer_text({**_healthy(3), "proctor_train_step": math.inf}), "step is inf"),
        # A NaN step raised ValueError: the scrape counted as unanswered, and five of them
        # made a TrainerGone (Critical) of a trainer that was answering.
        (trainer_text({**_healthy(3), "proctor_train_step": math.nan}), "step is nan"),
        # A NaN checkpoint time read as "no checkpoint yet": a CheckpointStale false alarm.
        (
            trainer_text({**_healthy(30), "proctor_train_last_checkpoint_timestamp_seconds": -1}),
            "timestamp_seconds is -1",
        ),
        # One broken line failed the whole scrape as unanswered.
        (
            trainer_text(_healthy(3)).replace(" 0.41\n", " 0,41\n"),
            "1 line(s) of the exposition did not parse",
        ),
        # An answer cut at a line's end parses: its missing checkpoint gauges read as none.
        (trainer_text(_healthy(30)).split("# HELP proctor_train_last")[0], "lacks"),
        # A cut inside a line: the number cut short ("0.41" to "0.4") must not be read.
        (trainer_text(_healthy(3))[:-3], "did not parse"),
        # An error page answered with 200 is no exposition.
        (_HTML, "no Prometheus exposition"),
        ("", "empty"),
    ],
)
def test_what_the_fuzzing_found_in_the_trainer_parser(text, problem):
    sample = parse_trainer(text, EXPERIMENT, NAMESPACE, now=1.0)
    assert sample.reachable, "it answered: not a trainer gone"
    assert sample.step is None, "nothing is judged from a damaged scrape"
    assert problem in (sample.unreadable or ""), sample.unreadable


def test_a_whole_scrape_is_read_with_every_value():
    sample = parse_trainer(trainer_text(_healthy(30)), EXPERIMENT, NAMESPACE, now=1.0)
    assert (sample.step, sample.unreadable) == (1860, None)
    assert sample.loss == pytest.approx(_healthy(30)["proctor_train_loss"])
    assert sample.last_checkpoint_step == 120
    assert sample.mfu == 0.41


def test_negative_or_infinite_dcgm_readings_are_not_judged():
    # -Inf utilization read as an idle GPU (-inf < 20); a negative free framebuffer as one
    # nearly full.
    lines = []
    for line in HEALTHY_DCGM.splitlines():
        if line.startswith(("DCGM_FI_DEV_GPU_UTIL{", "DCGM_FI_DEV_FB_FREE{")):
            line = line.rsplit(" ", 1)[0] + " -Inf"
        lines.append(line)
    samples = dcgm.gpu_samples_from_exposition("\n".join(lines), POD, POD_NAMESPACE, 1.0)
    assert samples
    for sample in samples:
        assert sample.utilization is None or math.isnan(sample.utilization)
        assert sample.memory_ratio is None or math.isnan(sample.memory_ratio)


# ---- the real watchdog against a real server that answers badly ------------------------------

Answer = tuple[int, str, bytes]


@contextmanager
def _serve(answers: dict[str, Callable[[], Answer]]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering each path with (status, content type, body)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            status, kind, body = answers.get(path, lambda: (404, "text/plain", b"no"))()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            promised = len(body) * (2 if path == "/short" else 1)  # "/short": cut mid-answer
            self.send_header("Content-Length", str(promised))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def _not_http() -> Iterator[str]:
    """A TCP port that answers garbage instead of HTTP, then hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(4096)
                connection.sendall(b"\x00\xffSSH-2.0-OpenSSH garbage\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


_TEN_MB = (
    trainer_text(_healthy(3)).encode() + b'# padding\nfiller{x="' + b"y" * (10 * 2**20) + b'"} 1\n'
)
_PROMETHEUS_BAD = {
    "html": (502, "text/html", _HTML.encode()),
    "json-html": (200, "application/json", _HTML.encode()),
    "truncated-json": (200, "application/json", b'{"status":"success","data":{"resultType":"vec'),
    "deep-json": (200, "application/json", b"[" * 100_000),
    "wrong-shape": (
        200,
        "application/json",
        json.dumps({"status": "success", "data": {"resultType": "vector", "result": 7}}).encode(),
    ),
    "labels-not-strings": (
        200,
        "application/json",
        json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [
                        {
                            "metric": {"gpu": 0, "pod": POD, "namespace": POD_NAMESPACE},
                            "value": [1, "5"],
                        }
                    ],
                },
            }
        ).encode(),
    ),
    "error": (200, "application/json", b'{"status":"error","errorType":"bad_data","error":"x"}'),
    "huge": (200, "application/json", b'{"status":"success","pad":"' + b"z" * (40 * 2**20)),
}


@pytest.mark.parametrize("bad", sorted(_PROMETHEUS_BAD))
def test_a_prometheus_that_answers_badly_is_dcgm_unavailable(bad):
    answer = _PROMETHEUS_BAD[bad]
    with _serve({"/api/v1/query": lambda: answer}) as url, pytest.raises(dcgm.DcgmUnavailable):
        dcgm.read_prometheus(url, POD, POD_NAMESPACE, timeout=5)


def test_the_trainer_endpoint_answering_badly_is_read_or_unreachable_never_raised():
    healthy = trainer_text(_healthy(3)).encode()
    answers = {
        "/ok": lambda: (200, "text/plain; version=0.0.4", healthy),
        "/json": lambda: (200, "application/json", healthy),  # wrong content type: read anyway
        "/html": lambda: (200, "text/html", _HTML.encode()),
        "/error": lambda: (500, "text/html", _HTML.encode()),
        "/short": lambda: (200, "text/plain", healthy[: len(healthy) // 2]),
        "/big": lambda: (200, "text/plain", _TEN_MB),
    }
    with _serve(answers) as url, _not_http() as garbage:
        ok = read_trainer(f"{url}/ok", EXPERIMENT, NAMESPACE, 1.0)
        assert (ok.step, ok.unreadable) == (240, None)
        assert ok.last_checkpoint_step is None, "no checkpoint in the first 10 minutes"
        assert read_trainer(f"{url}/json", EXPERIMENT, NAMESPACE, 1.0).step == 240
        html = read_trainer(f"{url}/html", EXPERIMENT, NAMESPACE, 1.0)
        assert html.reachable
        assert html.step is None
        assert "no Prometheus exposition" in (html.unreadable or "")
        assert not read_trainer(f"{url}/error", EXPERIMENT, NAMESPACE, 1.0).reachable
        short = read_trainer(f"{url}/short", EXPERIMENT, NAMESPACE, 1.0)
        assert short.step is None, "a half answer is not judged"
        assert short.unreadable
        assert not read_trainer(garbage, EXPERIMENT, NAMESPACE, 1.0).reachable
        started = time.monotonic()
        big = read_trainer(f"{url}/big", EXPERIMENT, NAMESPACE, 1.0)
        assert time.monotonic() - started < 10
        assert big.reachable
        assert f"over {MAX_SCRAPE_BYTES // 2**20} MiB" in (big.unreadable or "")


def test_the_watchdog_checks_on_through_bad_answers_and_says_gpus_are_unavailable(tmp_path):
    """The real check loop: each source answering badly in turn, for a trainer that is fine.
    No check raises, nothing is reported, and the DCGM gap is a degraded note."""
    state: dict[str, Any] = {"i": 0, "trainer": "ok", "prometheus": "html"}

    def trainer() -> Answer:
        values = _healthy(state["i"])
        text = trainer_text(values).encode()
        return {
            "ok": (200, "text/plain", text),
            "html": (200, "text/html", _HTML.encode()),
            "big": (200, "text/plain", _TEN_MB),
            "truncated": (200, "text/plain", text[: len(text) // 2]),
            "nan": (
                200,
                "text/plain",
                trainer_text({**values, "proctor_train_mfu_ratio": math.nan}).encode(),
            ),
        }[state["trainer"]]

    with _serve(
        {"/metrics": trainer, "/api/v1/query": lambda: _PROMETHEUS_BAD[state["prometheus"]]}
    ) as url:
        spec = WatchdogSpec.model_validate({"metricSources": {"prometheusURL": url}})
        config = WatchdogConfig(
            experiment=EXPERIMENT,
            namespace=NAMESPACE,
            pod=POD,
            metrics_url=f"{url}/metrics",
            metrics_file=None,
            bundle_uri=None,
            checkpoint_uri=None,
            spool_dir=tmp_path / "spool",
            spec=spec,
        )
        clock = {"now": START}
        watchdog = Watchdog(config, None, clock=lambda: clock["now"])
        kinds = ["ok", "html", "truncated", "nan", "ok", "big", "ok", "html", "ok", "ok"]
        prometheus = sorted(_PROMETHEUS_BAD)
        for i, kind in enumerate(kinds * 2):
            state.update(i=i, trainer=kind, prometheus=prometheus[i % len(prometheus)])
            clock["now"] = START + i * SCRAPE_SECONDS
            assert watchdog.check() == [], f"check {i} ({kind}) reported an anomaly"
            assert "GPU metrics unavailable" in watchdog.notes.get("dcgm", ""), watchdog.notes
            damaged = kind in ("html", "truncated", "nan", "big")
            assert ("trainer" in watchdog.notes) == damaged, (kind, watchdog.notes)
    steps = [s.step for s in watchdog.window.trainer if s.step is not None]
    assert steps == sorted(steps)
    assert len(steps) >= 10


def test_reading_the_tail_of_a_corrupt_metrics_file_skips_what_is_not_a_record(tmp_path):
    from proctor.watchdog.trainer import JsonLinesTail

    path = Path(tmp_path / "metrics.jsonl")
    records = [
        json.dumps({"time": 1.0, "step": 10, "loss": 0.5}),
        '{"time": 2.0, "step": 20, "loss": ' + "[" * 5000,
        json.dumps({"time": 3.0, "step": "x", "loss": 0.4}),
        json.dumps([1, 2]),
        json.dumps({"event": "checkpoint", "step": None}),
        "\x00\xff garbage",
        json.dumps({"time": 4.0, "step": 40, "loss": "nan"}),
    ]
    path.write_text("\n".join(records) + "\n", errors="surrogateescape")
    points = JsonLinesTail(path).read()
    assert [p.step for p in points] == [10, 40]
    assert math.isnan(points[1].loss)
