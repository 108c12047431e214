"""Promise: bundles are written only under the Experiment's own prefix,
`<bundle uri>/<namespace>/<experiment>/`, and a spec cannot direct them elsewhere; a bundle URI
handed to a reader (`proctor bundle show`, `proctor bundle fetch`, the agent tools) that steps
out of one is refused, with a message that says why, before any storage is touched.

Keys are formed in one place (proctor.api.layout.experiment_prefix, then the watchdog's directory
name); the parts a spec controls are the store URI (the API's pattern refuses '..', '.', '//',
'%', backslashes and control characters), the name and the namespace (DNS labels, by the API
server). The watchdog itself refuses a prefix that is not its experiment's own, and the real
watchdog writes real bundles to a real S3 endpoint (moto) here, where every key is listed.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import proctor.agent.bundles as agent_bundles
import proctor.local.bundles as local_bundles
from proctor.agent.bundles import fetch_bundle, list_bundles
from proctor.agent.connection import Connection
from proctor.agent.errors import AgentError
from proctor.api.layout import LayoutError, bundle_location, experiment_prefix
from proctor.api.v1alpha1.experiment import AnomalyKind, CheckpointSpec, RecoverySpec, Severity
from proctor.local.bundles import BundleError, load_bundle
from proctor.watchdog.bundles import bundle_directory
from proctor.watchdog.observations import Finding
from proctor.watchdog.runner import Watchdog, WatchdogConfig
from tests.agent.real_bundle import at, write_bundle
from tests.security.specs import labels
from tests.support.cluster import running_cluster
from tests.support.s3 import MotoServer, s3_environment

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
BUCKET = "bundles"

# Valid store URIs, including the odd-but-harmless segments the pattern lets through.
stores = st.builds(
    lambda scheme, segments, slash: scheme + "/".join(segments) + slash,
    st.sampled_from(["s3://bundles/", "s3://team.bucket/", "file:///var/lib/"]),
    st.lists(
        st.one_of(
            labels, st.sampled_from(["...", "a..b", ".cache", "..x", "x y", "ns", "default"])
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["", "/"]),
)
findings = st.builds(
    Finding,
    kind=st.sampled_from(list(AnomalyKind)),
    severity=st.sampled_from(list(Severity)),
    message=st.text(max_size=40),
    key=st.text(max_size=60),  # what detectors put here is theirs; it only feeds a digest
    evidence=st.just({}),
    step=st.one_of(st.none(), st.integers(0, 2**62)),
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
)
# What a hostile value for a namespace or name looks like: anything but a DNS label.
not_labels = st.one_of(
    st.sampled_from(["..", ".", "", "a/b", "../other", "%2e%2e", "A", "x" * 64, "a\\b", "a\nb"]),
    st.text(max_size=20),
).filter(lambda value: bundle_location_ok(value) is False)
TRAVERSALS = [
    "/..",
    "/../other-team",
    "/./x",
    "//x",
    "/%2e%2e/other-team",
    "/%2E%2E%2Fother",
    "/a\\..\\b",
    "/x\x00",
]


def bundle_location_ok(label: str) -> bool:
    try:
        experiment_prefix("s3://bundles/p", label, "exp")
    except LayoutError:
        return False
    return True


@PROPERTY
@given(store=stores, namespace=labels, name=labels, finding=findings, now=moments)
def test_no_name_namespace_or_finding_makes_a_key_leave_the_experiment_prefix(
    store, namespace, name, finding, now
):
    RecoverySpec(bundle_uri=store)  # a store the API accepts
    prefix = experiment_prefix(store, namespace, name)
    assert prefix == f"{store.rstrip('/')}/{namespace}/{name}"
    uri = f"{prefix}/{bundle_directory(finding, now)}/"
    location = bundle_location(uri)
    assert (location.prefix, location.namespace, location.experiment) == (prefix, namespace, name)
    for file_name in ("bundle.json", "metrics.png", "recovery.md"):
        key = f"{location.uri}/{file_name}"
        assert key.startswith(prefix + "/")
        assert ".." not in key.split("/")


@PROPERTY
@given(store=stores, bad=not_labels, where=st.sampled_from(["namespace", "name"]))
def test_a_namespace_or_name_that_is_not_a_dns_label_is_refused(store, bad, where):
    args = {"namespace": "team-a", "name": "exp", where: bad}
    with pytest.raises(LayoutError, match="is not a DNS label"):
        experiment_prefix(store, **args)


@pytest.mark.parametrize("traversal", TRAVERSALS)
@pytest.mark.parametrize("base", ["s3://bundles/proctor", "file:///var/lib/proctor"])
def test_a_store_uri_that_steps_out_is_refused_by_the_api_and_by_the_layout(base, traversal):
    uri = base + traversal
    for model, field in ((RecoverySpec, "bundle_uri"), (CheckpointSpec, "uri")):
        with pytest.raises(ValidationError) as caught:
            model(**{field: uri})
        assert "without '.' or '..' segments" in str(caught.value) or "pattern" in str(caught.value)
    with pytest.raises(LayoutError):
        experiment_prefix(uri, "team-a", "exp")


# ---- the real watchdog, a real S3 endpoint: every key it writes -----------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoServer()
    server.start()
    try:
        with s3_environment(server):
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            yield server
    finally:
        server.stop()


def _nan_run(path: Path) -> Path:
    """A trainer's JSON-lines file whose loss turns NaN at step 3."""
    now = time.time()
    losses = [0.9, 0.8, "nan", "nan"]
    path.write_text(
        "".join(
            json.dumps({"time": now - 10 + i, "step": i + 1, "loss": loss}) + "\n"
            for i, loss in enumerate(losses)
        )
    )
    return path


def _watch_once(tmp: Path, namespace: str, name: str, bundle_uri: str) -> Watchdog:
    tmp.mkdir(parents=True)
    config = WatchdogConfig(
        experiment=name,
        namespace=namespace,
        pod=None,
        metrics_url="http://127.0.0.1:9/metrics",  # nothing listens: only the file is read
        metrics_file=_nan_run(tmp / "metrics.jsonl"),
        bundle_uri=bundle_uri,
        checkpoint_uri=None,
        spool_dir=tmp / "spool",
    )
    watchdog = Watchdog(config, kube=None)
    watchdog.check()
    watchdog.drain(grace_seconds=10)
    return watchdog


def _all_keys() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_the_watchdog_writes_only_under_its_own_prefix_on_a_real_s3_endpoint(s3, tmp_path):
    base = f"s3://{BUCKET}/proctor"
    # Names chosen to collide: an experiment named like another namespace, in a namespace named
    # like another experiment, and one named "studies" (digests live at <ns>/studies/).
    own = [("team-a", "team-b"), ("team-b", "team-a"), ("team-a", "studies")]
    for namespace, name in own:
        _watch_once(tmp_path / f"{namespace}.{name}", namespace, name, f"{base}/{namespace}/{name}")
    # A prefix that is not the experiment's own, however it came about: refused, nothing written.
    hostile = [
        f"{base}/team-c/victim",  # another experiment's prefix
        f"{base}/../other-team/team-a/x",  # traversal
        f"{base}/%2e%2e/team-a/x",  # encoded traversal
        f"s3://{BUCKET}//team-a/x",  # an empty segment (not the canonical prefix)
    ]
    refused = []
    for index, uri in enumerate(hostile):
        watchdog = _watch_once(tmp_path / f"hostile{index}", "team-a", "x", uri)
        assert watchdog.bundle_prefix is None, uri
        assert "refused" in watchdog.notes["bundles"], watchdog.notes
        refused.append(watchdog)

    keys = _all_keys()
    assert keys, "the watchdogs with their own prefix wrote bundles"
    for key in keys:
        assert any(key.startswith(f"proctor/{ns}/{name}/") for ns, name in own), key
        assert ".." not in key.split("/"), key
        assert "%" not in key, key
    for namespace, name in own:
        mine = [k for k in keys if k.startswith(f"proctor/{namespace}/{name}/")]
        directory = mine[0].split("/")[3]
        assert {k.rsplit("/", 1)[1] for k in mine} == {"bundle.json", "metrics.png", "recovery.md"}
        assert bundle_location(f"{base}/{namespace}/{name}/{directory}").experiment == name
        assert all(k.count("/") == 4 for k in mine), mine  # proctor/<ns>/<name>/<dir>/<file>


# ---- readers: refused before any storage access ---------------------------------------------

HOSTILE_URIS = [
    "s3://bundles/proctor/default/exp/../../other-team/exp/20261122T081500Z-Stall-0a1b2c",
    "s3://bundles/proctor/default/exp/%2e%2e/%2e%2e/x/20261122T081500Z-Stall-0a1b2c",
    "s3://bundles/proctor/default/exp/%2E%2E%2F%2E%2E/20261122T081500Z-Stall-0a1b2c",
    "file:///etc/passwd",
    "file:///../../etc/default/exp/20261122T081500Z-Stall-0a1b2c",
    "/etc/passwd",
    "../../other-team/exp/20261122T081500Z-Stall-0a1b2c",
    "s3://bundles//default/exp/20261122T081500Z-Stall-0a1b2c",
    "s3://bundles/proctor/default/exp/./20261122T081500Z-Stall-0a1b2c",
    "https://evil.example/default/exp/20261122T081500Z-Stall-0a1b2c",
    "s3://bundles/proctor/default/exp/20261122T081500Z-Stall-0a1b2c\\..\\..",
]


@pytest.fixture
def storage_calls(monkeypatch) -> list[str]:
    """Every store the readers open (the real open_store, recorded, not replaced)."""
    calls: list[str] = []

    def recorded(opener):
        def open_store(uri: str):
            calls.append(uri)
            return opener(uri)

        return open_store

    monkeypatch.setattr(agent_bundles, "open_store", recorded(agent_bundles.open_store))
    monkeypatch.setattr(local_bundles, "open_store", recorded(local_bundles.open_store))
    return calls


@pytest.mark.parametrize("uri", HOSTILE_URIS)
def test_bundle_fetch_refuses_a_uri_that_is_not_a_bundle_directory(uri, storage_calls, tmp_path):
    with pytest.raises(AgentError) as caught:
        fetch_bundle(uri, tmp_path / "out")
    assert caught.value.message.startswith("refused bundle URI"), caught.value.message
    assert "<namespace>/<experiment>" in caught.value.hint
    assert storage_calls == [], "refused before any storage access"
    assert not (tmp_path / "out").exists()


# `proctor bundle show` also reads a directory above bundles, or a path, for a person with their
# own credentials (file:///etc/passwd there is "no bundle.json there"); what it refuses is a URI
# that steps out of where it points.
STEPPING_OUT = [u for u in HOSTILE_URIS if "://" in u and any(t in u for t in ("..", "%", "/./"))]


@pytest.mark.parametrize("uri", [*STEPPING_OUT, "s3://bundles//default/exp"])
def test_bundle_show_refuses_a_uri_that_steps_out(uri, storage_calls):
    with pytest.raises(BundleError, match="refused"):
        load_bundle(uri)
    assert storage_calls == [], "refused before any storage access"


def test_a_reader_still_reads_a_real_bundle(storage_calls, tmp_path):
    """The checks refuse traversal, not bundles: the same readers read a real one."""
    uri = write_bundle(tmp_path / "store", "default", "exp", at(15))
    fetched = fetch_bundle(uri, tmp_path / "out")
    assert sorted(fetched.files) == ["bundle.json", "metrics.png", "recovery.md"]
    assert load_bundle(uri).bundle.finding.kind == AnomalyKind.NON_FINITE_LOSS
    assert storage_calls == [uri, uri]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """An emulated API server with the CRDs (objects and validation, no pods)."""
    with running_cluster(tmp_path_factory.mktemp("api"), pods=False) as handle:
        handle.kubectl("apply", "-f", "crds/")
        yield handle


@pytest.mark.kubectl
def test_an_agent_reads_only_its_namespaces_bundles_from_the_experiments_own_stores(
    api, monkeypatch, tmp_path, storage_calls
):
    """An agent's connection names its namespace; a bundle URI of another namespace, or in a
    store that is not one of the experiment's (another bucket), is refused, and a status
    entry that points elsewhere (a forged anomaly Event) is left out of the listing."""
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig))
    monkeypatch.delenv("PROCTOR_BUNDLE_URI", raising=False)
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    own = write_bundle(store, "default", "reader", at(10))
    other_namespace = write_bundle(store, "team-b", "reader", at(11))
    other_store = write_bundle(elsewhere, "default", "reader", at(12))
    manifest = {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "reader", "namespace": "default"},
        "spec": {
            "hypothesis": {
                "statement": "s",
                "expectedOutcome": "accuracy 0.9",
                "inspiredBy": [{"kind": "Note", "ref": "n"}],
                "independentVariable": "code.config.lr",
                "controls": ["seed 0"],
            },
            "code": {"image": "registry.example/m:1", "entrypoint": "m:setup"},
            "training": {"budget": {"maxSteps": 10}},
            "recovery": {"bundleURI": store.as_uri()},
        },
    }
    api.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    forged = {"kind": "Stall", "severity": "Warning", "time": "2026-11-22T08:13:00Z"}
    api.patch_status(
        "exp/reader",
        {"anomalies": [{**forged, "message": "m", "bundleURI": other_namespace}]},
    )
    connection = Connection.from_environment("default")

    assert fetch_bundle(own, tmp_path / "own", connection).files
    with pytest.raises(AgentError, match="belongs to namespace team-b"):
        fetch_bundle(other_namespace, tmp_path / "ns", connection)
    with pytest.raises(AgentError, match="is not one of Experiment reader's bundle stores"):
        fetch_bundle(other_store, tmp_path / "bucket", connection)
    assert storage_calls == [own], "only the experiment's own bundle was opened"

    listing = list_bundles(connection, "reader")
    assert [b.uri for b in listing.bundles] == [own]
    assert any("not a bundle of default/reader" in note for note in listing.notes)
    with pytest.raises(AgentError, match=r"'\.\.' segment"):
        list_bundles(connection, "reader", store.as_uri() + "/../elsewhere")
