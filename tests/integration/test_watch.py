"""Watch semantics over HTTP, as kopf and client-go reflectors use them."""

from __future__ import annotations

import json
import urllib.request

import yaml

from proctor.cluster.store import Store


def _url(cluster) -> str:
    return yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def _watch(cluster, query: str) -> list[dict]:
    url = f"{_url(cluster)}/api/v1/namespaces/default/configmaps?watch=true&{query}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def _get(cluster, path: str) -> dict:
    with urllib.request.urlopen(f"{_url(cluster)}{path}", timeout=30) as response:
        return json.loads(response.read())


def test_watch_resumes_from_a_resource_version_and_ends_at_its_timeout(cluster):
    start = _get(cluster, "/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"]
    cluster.kubectl("create", "configmap", "w1", "--from-literal=a=1")
    cluster.kubectl("patch", "configmap", "w1", "--type=merge", "-p", '{"data": {"a": "2"}}')
    events = _watch(cluster, f"resourceVersion={start}&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
    ]
    assert events[1]["object"]["data"] == {"a": "2"}


def test_list_responses_carry_kind_api_version_and_a_resource_version(cluster):
    listing = _get(cluster, "/api/v1/namespaces/default/configmaps")
    assert listing["kind"] == "ConfigMapList"
    assert listing["apiVersion"] == "v1"
    assert int(listing["metadata"]["resourceVersion"]) > 0


def test_a_too_old_resource_version_gets_410_gone(cluster):
    start = _get(cluster, "/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"]
    cluster.kubectl("create", "configmap", "w2", "--from-literal=a=1")
    cluster.call(Store.compact, cluster.cluster.store)
    [event] = _watch(cluster, f"resourceVersion={start}&timeoutSeconds=1")
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


def test_bookmarks_keep_an_idle_watch_current(cluster):
    now = _get(cluster, "/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"]
    query = f"resourceVersion={now}&allowWatchBookmarks=true&timeoutSeconds=3"
    events = _watch(cluster, query + "&fieldSelector=metadata.name%3Dnone")
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, "an idle watch with bookmarks allowed gets BOOKMARK events"
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= int(now)


def test_a_streaming_list_ends_its_snapshot_with_the_initial_events_bookmark(cluster):
    cluster.kubectl("create", "configmap", "w3", "--from-literal=a=1")
    events = _watch(
        cluster,
        "sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
    )
    names = [e["object"]["metadata"].get("name") for e in events if e["type"] == "ADDED"]
    assert "w3" in names
    end = next(e for e in events if e["type"] == "BOOKMARK")
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_faults_can_be_injected_through_kmocks_dsl_ahead_of_the_default_behaviour(cluster):
    import urllib.error

    import pytest

    def inject() -> None:
        api = cluster.cluster.api
        api["get", "/api/v1/namespaces/default/secrets"][:1] << 503

    cluster.call(inject)
    with pytest.raises(urllib.error.HTTPError) as fault:
        _get(cluster, "/api/v1/namespaces/default/secrets")
    assert fault.value.code == 503
    assert _get(cluster, "/api/v1/namespaces/default/secrets")["kind"] == "SecretList"
    assert _get(cluster, "/api/v1/namespaces/default/configmaps")["kind"] == "ConfigMapList"


def test_malformed_requests_get_a_status_not_a_crash(cluster):
    import urllib.error

    import pytest

    url = f"{_url(cluster)}/api/v1/namespaces/default/configmaps"
    cases = [
        ("POST", url, b'{"metadata": "not an object"}', "application/json"),
        ("PATCH", f"{url}/none", b"[1]", "application/merge-patch+json"),
        ("GET", f"{url}?watch=true&timeoutSeconds=soon", None, None),
        ("GET", f"{url}?labelSelector=app%3D(", None, None),
    ]
    for method, target, body, content_type in cases:
        request = urllib.request.Request(target, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        status = json.loads(caught.value.read())
        assert caught.value.code in (400, 404, 422), (method, target)
        assert status["kind"] == "Status"
        assert "traceback" not in json.dumps(status).lower()


def test_a_watch_with_a_selector_sees_objects_enter_and_leave_it(cluster):
    start = _get(cluster, "/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"]
    cluster.kubectl("create", "configmap", "mover", "--from-literal=a=1")
    cluster.kubectl("label", "configmap", "mover", "stage=active")
    cluster.kubectl("label", "configmap", "mover", "stage=done", "--overwrite")
    events = _watch(
        cluster, f"resourceVersion={start}&timeoutSeconds=1&labelSelector=stage%3Dactive"
    )
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
