"""The store's write semantics, without HTTP: what the real API server does to objects."""

from __future__ import annotations

import itertools

import pytest
import yaml

from proctor.cluster.errors import ApiError
from proctor.cluster.selectors import label_selector, required_labels
from proctor.cluster.store import Store
from tests.support.crd_schema import REPO

MERGE = "application/merge-patch+json"


@pytest.fixture
def store() -> Store:
    store = Store()
    crds = store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    for path in sorted((REPO / "crds").glob("*.yaml")):
        store.create(crds, "", yaml.safe_load(path.read_text()))
    return store


def _configmap(store: Store, name: str, **meta) -> dict:
    cms = store.type("", "v1", "configmaps")
    return store.create(cms, "default", {"metadata": {"name": name, **meta}, "data": {"k": "v"}})


def test_create_sets_identity_and_a_monotonic_resource_version(store):
    first = _configmap(store, "a")
    second = _configmap(store, "b")
    assert first["metadata"]["uid"] != second["metadata"]["uid"]
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert "generation" not in first["metadata"], "ConfigMaps have no generation"
    assert first["metadata"]["creationTimestamp"].endswith("Z")
    assert (first["apiVersion"], first["kind"]) == ("v1", "ConfigMap")


def test_duplicate_names_conflict_and_missing_namespaces_are_not_found(store):
    _configmap(store, "a")
    with pytest.raises(ApiError) as duplicate:
        _configmap(store, "a")
    assert duplicate.value.code == 409
    cms = store.type("", "v1", "configmaps")
    with pytest.raises(ApiError) as missing:
        store.create(cms, "nowhere", {"metadata": {"name": "x"}})
    assert missing.value.code == 404


def test_generate_name(store):
    cms = store.type("", "v1", "configmaps")
    obj = store.create(cms, "default", {"metadata": {"generateName": "run-"}})
    assert obj["metadata"]["name"].startswith("run-")
    assert len(obj["metadata"]["name"]) == len("run-") + 5


def test_generation_moves_on_spec_changes_only(store):
    vps = store.type("proctor.dev", "v1alpha1", "validationpyramids")
    obj = store.create(
        vps, "default", yaml.safe_load((REPO / "examples/digits/pyramid.yaml").read_text())
    )
    assert obj["metadata"]["generation"] == 1
    name = obj["metadata"]["name"]
    labelled = store.patch(vps, "default", name, {"metadata": {"labels": {"x": "y"}}}, MERGE)
    assert labelled["metadata"]["generation"] == 1
    status = store.patch(
        vps, "default", name, {"status": {"phase": "Pending"}}, MERGE, subresource="status"
    )
    assert status["metadata"]["generation"] == 1
    changed = store.patch(vps, "default", name, {"spec": {"layers": {"l3": {"steps": 7}}}}, MERGE)
    assert changed["metadata"]["generation"] == 2
    assert changed["metadata"]["uid"] == obj["metadata"]["uid"]


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"name": "Bad_Name"}, "metadata.name"),
        ({"name": "ok", "labels": {"bad key!": "x"}}, "metadata.labels"),
        ({"name": "ok", "labels": {"k": "v" * 64}}, "metadata.labels"),
    ],
)
def test_names_and_labels_are_checked_as_the_real_server_does(store, meta, field):
    cms = store.type("", "v1", "configmaps")
    with pytest.raises(ApiError) as invalid:
        store.create(cms, "default", {"metadata": meta})
    assert invalid.value.code == 422
    assert invalid.value.details["causes"][0]["field"] == field


def test_a_new_namespace_gets_its_name_label_and_a_default_service_account(store):
    namespaces = store.type("", "v1", "namespaces")
    ns = store.create(namespaces, "", {"metadata": {"name": "team-a"}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert store.get(store.type("", "v1", "serviceaccounts"), "team-a", "default")


def test_replacing_a_custom_resource_needs_its_resource_version(store):
    vps = store.type("proctor.dev", "v1alpha1", "validationpyramids")
    obj = store.create(
        vps, "default", yaml.safe_load((REPO / "examples/digits/pyramid.yaml").read_text())
    )
    del obj["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as refused:
        store.update(vps, "default", obj["metadata"]["name"], obj)
    assert refused.value.code == 422
    assert "must be specified for an update" in refused.value.message


def test_a_write_with_a_stale_resource_version_conflicts(store):
    cms = store.type("", "v1", "configmaps")
    old = _configmap(store, "a")
    store.patch(cms, "default", "a", {"data": {"k": "newer"}}, MERGE)
    with pytest.raises(ApiError) as stale:
        store.update(cms, "default", "a", {**old, "data": {"k": "lost update"}})
    assert stale.value.code == 409
    assert store.get(cms, "default", "a")["data"] == {"k": "newer"}


def test_status_subresource_splits_spec_and_status_writes(store):
    vps = store.type("proctor.dev", "v1alpha1", "validationpyramids")
    manifest = yaml.safe_load((REPO / "examples/digits/pyramid.yaml").read_text())
    manifest["status"] = {"phase": "Passed"}
    created = store.create(vps, "default", manifest)
    assert "status" not in created, "status is ignored on create"
    store.patch(
        vps,
        "default",
        "digits-mlp-check",
        {"status": {"phase": "Running"}, "spec": {"layers": {"l3": {"steps": 7}}}},
        MERGE,
        subresource="status",
    )
    obj = store.get(vps, "default", "digits-mlp-check")
    assert obj["status"] == {"phase": "Running"}
    assert obj["spec"]["layers"]["l3"]["steps"] == 5


def test_custom_resources_get_schema_defaults(store):
    vps = store.type("proctor.dev", "v1alpha1", "validationpyramids")
    obj = store.create(
        vps, "default", yaml.safe_load((REPO / "examples/digits/pyramid.yaml").read_text())
    )
    assert obj["spec"]["layers"]["l2"]["targetLossRatio"] == 0.1
    assert obj["spec"]["layers"]["l2"]["maxSteps"] == 300


def test_dry_run_writes_nothing(store):
    cms = store.type("", "v1", "configmaps")
    rv = store.resource_version
    store.create(cms, "default", {"metadata": {"name": "ghost"}}, dry_run=True)
    assert store.resource_version == rv
    with pytest.raises(ApiError):
        store.get(cms, "default", "ghost")


def test_finalizers_hold_deletion_until_removed(store):
    cms = store.type("", "v1", "configmaps")
    _configmap(store, "held", finalizers=["proctor.dev/bundle"])
    marked = store.delete(cms, "default", "held")
    assert marked["metadata"]["deletionTimestamp"]
    assert store.get(cms, "default", "held")
    store.patch(cms, "default", "held", {"metadata": {"finalizers": None}}, MERGE)
    with pytest.raises(ApiError) as gone:
        store.get(cms, "default", "held")
    assert gone.value.code == 404


def _owned(store: Store, owner: dict, name: str) -> dict:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return _configmap(store, name, ownerReferences=[ref])


@pytest.mark.parametrize("policy", [None, "Background", "Foreground"])
def test_deleting_an_owner_deletes_its_dependents(store, policy):
    cms = store.type("", "v1", "configmaps")
    owner = _configmap(store, "owner")
    child = _owned(store, owner, "child")
    _owned(store, child, "grandchild")
    store.delete(cms, "default", "owner", propagation=policy)
    assert [o["metadata"]["name"] for o in store.list(cms, "default")] == []


def test_orphan_propagation_keeps_dependents_without_the_reference(store):
    cms = store.type("", "v1", "configmaps")
    owner = _configmap(store, "owner")
    _owned(store, owner, "child")
    store.delete(cms, "default", "owner", propagation="Orphan")
    child = store.get(cms, "default", "child")
    assert child["metadata"]["ownerReferences"] == []


def test_foreground_deletion_waits_for_a_dependent_with_a_finalizer(store):
    cms = store.type("", "v1", "configmaps")
    owner = _configmap(store, "owner")
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    _configmap(store, "child", ownerReferences=[ref], finalizers=["hold"])
    store.delete(cms, "default", "owner", propagation="Foreground")
    assert "foregroundDeletion" in store.get(cms, "default", "owner")["metadata"]["finalizers"]
    store.patch(cms, "default", "child", {"metadata": {"finalizers": None}}, MERGE)
    assert store.list(cms, "default") == []


def test_deleting_a_namespace_deletes_its_contents_then_itself(store):
    namespaces = store.type("", "v1", "namespaces")
    cms = store.type("", "v1", "configmaps")
    store.create(namespaces, "", {"metadata": {"name": "scratch"}})
    store.create(cms, "scratch", {"metadata": {"name": "a"}})
    store.delete(namespaces, "", "scratch")
    assert store.list(cms, "scratch") == []
    with pytest.raises(ApiError):
        store.get(namespaces, "", "scratch")


def test_a_terminating_namespace_refuses_new_objects(store):
    namespaces = store.type("", "v1", "namespaces")
    cms = store.type("", "v1", "configmaps")
    store.create(namespaces, "", {"metadata": {"name": "closing"}})
    store.create(cms, "closing", {"metadata": {"name": "held", "finalizers": ["x"]}})
    store.delete(namespaces, "", "closing")
    with pytest.raises(ApiError) as refused:
        store.create(cms, "closing", {"metadata": {"name": "new"}})
    assert refused.value.code == 403


def test_deleting_a_crd_removes_its_resource_and_objects(store):
    crds = store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    vps = store.type("proctor.dev", "v1alpha1", "validationpyramids")
    store.create(
        vps, "default", yaml.safe_load((REPO / "examples/digits/pyramid.yaml").read_text())
    )
    store.delete(crds, "", "validationpyramids.proctor.dev")
    with pytest.raises(ApiError) as unknown:
        store.type("proctor.dev", "v1alpha1", "validationpyramids")
    assert unknown.value.code == 404


def test_watch_history_replays_changes_and_expires_with_410(store):
    cms = store.type("", "v1", "configmaps")
    start = store.resource_version
    _configmap(store, "a")
    store.patch(cms, "default", "a", {"data": {"k": "2"}}, MERGE)
    assert [e.type for e in store.events_since(cms, start)] == ["ADDED", "MODIFIED"]
    store.compact()
    with pytest.raises(ApiError) as expired:
        store.events_since(cms, start)
    assert expired.value.code == 410


def test_secret_string_data_is_stored_as_base64_data(store):
    secrets = store.type("", "v1", "secrets")
    obj = store.create(
        secrets, "default", {"metadata": {"name": "s"}, "stringData": {"token": "abc"}}
    )
    assert obj["data"] == {"token": "YWJj"}
    assert "stringData" not in obj


def test_invalid_custom_resources_get_field_level_causes(store):
    exps = store.type("proctor.dev", "v1alpha1", "experiments")
    manifest = yaml.safe_load((REPO / "examples/invalid/negative-budget.yaml").read_text())
    with pytest.raises(ApiError) as invalid:
        store.create(exps, "default", manifest)
    assert invalid.value.code == 422
    [cause] = invalid.value.details["causes"]
    assert cause["field"] == "spec.training.budget.maxSteps"
    assert "greater than or equal to 1" in cause["message"]


def test_strict_field_validation_refuses_unknown_fields_and_default_prunes_them(store):
    exps = store.type("proctor.dev", "v1alpha1", "experiments")
    manifest = yaml.safe_load((REPO / "examples/invalid/unknown-field.yaml").read_text())
    with pytest.raises(ApiError) as strict:
        store.create(exps, "default", manifest, strict=True)
    assert strict.value.code == 400
    assert 'unknown field "spec.watchdog.threshold"' in strict.value.message
    pruned = store.create(exps, "default", manifest)
    assert "threshold" not in pruned["spec"]["watchdog"]


def test_an_orphan_delete_waiting_on_a_finalizer_still_orphans(store):
    cms = store.type("", "v1", "configmaps")
    owner = _configmap(store, "owner", finalizers=["proctor.dev/hold"])
    _owned(store, owner, "child")
    store.delete(cms, "default", "owner", propagation="Orphan")
    assert "orphan" in store.get(cms, "default", "owner")["metadata"]["finalizers"]
    store.patch(cms, "default", "owner", {"metadata": {"finalizers": ["orphan"]}}, MERGE)
    assert [o["metadata"]["name"] for o in store.list(cms, "default")] == ["child"]
    assert store.get(cms, "default", "child")["metadata"]["ownerReferences"] == []


def test_an_invalid_crd_is_refused_and_not_stored(store):
    crds = store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    broken = {
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "things", "kind": "Thing"},
            "scope": "Namespaced",
        },
    }
    with pytest.raises(ApiError) as refused:
        store.create(crds, "", broken)
    assert refused.value.code == 422
    with pytest.raises(ApiError):
        store.get(crds, "", "things.example.com")


def test_deleting_a_crd_waits_for_its_objects_finalizers(store):
    crds = store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    vps = store.type("proctor.dev", "v1alpha1", "validationpyramids")
    manifest = yaml.safe_load((REPO / "examples/digits/pyramid.yaml").read_text())
    manifest["metadata"]["finalizers"] = ["kopf.zalando.org/KopfFinalizerMarker"]
    store.create(vps, "default", manifest)
    store.delete(crds, "", "validationpyramids.proctor.dev")
    held = store.get(vps, "default", "digits-mlp-check")
    assert held["metadata"]["deletionTimestamp"], "the operator sees the deletion"
    store.patch(vps, "default", "digits-mlp-check", {"metadata": {"finalizers": None}}, MERGE)
    with pytest.raises(ApiError):
        store.get(crds, "", "validationpyramids.proctor.dev")
    with pytest.raises(ApiError):
        store.type("proctor.dev", "v1alpha1", "validationpyramids")


def test_a_list_narrowed_by_labels_finds_what_a_full_scan_finds(store):
    """The label index is an optimisation only: every selector answers as a scan of all objects
    does, after creates, relabels and deletes."""
    cms = store.type("", "v1", "configmaps")
    for i in range(12):
        labels = {"app": f"a{i % 3}", "tier": f"t{i % 2}"}
        _configmap(store, f"cm-{i:02d}", labels=labels)
    store.patch(cms, "default", "cm-00", {"metadata": {"labels": {"app": "a1"}}}, MERGE)
    store.patch(cms, "default", "cm-01", {"metadata": {"labels": {"tier": None}}}, MERGE)
    store.delete(cms, "default", "cm-02")
    selectors = [
        "app=a1",
        "app=a1,tier=t0",
        "app==a0,tier=t1",
        "app=a1,app=a2",
        "app=a9",
        "app=a1,tier!=t0",
        "app in (a0,a1),tier=t1",
        "tier",
        "!tier,app=a1",
        "",
    ]
    for selector, namespace in itertools.product(selectors, ["default", ""]):
        matches = label_selector(selector)
        narrowed = store.list(cms, namespace, matches, labels=required_labels(selector))
        scanned = store.list(cms, namespace, matches)
        names = [o["metadata"]["name"] for o in narrowed]
        assert names == [o["metadata"]["name"] for o in scanned], selector
    assert [o["metadata"]["name"] for o in store.list(cms, "default", labels={"app": "a1"})] == [
        "cm-00",
        "cm-01",
        "cm-04",
        "cm-07",
        "cm-10",
    ]
