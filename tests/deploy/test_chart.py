"""The Helm chart, rendered by the real helm: it lints, every object it renders is valid
Kubernetes, values are checked by the schema, the pod is locked down, and RBAC stays least
privilege: a verb or resource not on the allowed lists below fails the test, and so does a
permission the chart's README does not justify."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest
import yaml

from proctor.controller.settings import VARIABLES, ControllerSettings
from proctor.controller.training_jobs import watchdog_access
from proctor.kube import PLURALS
from tests.support.crd_schema import REPO, load_crd
from tests.unit.test_crds import KUBERNETES_VERSION

pytestmark = pytest.mark.kubectl

CHART = REPO / "charts" / "proctor"
HELM = REPO / ".bin" / "helm"

# (apiGroup, resource) -> the verbs the operator may hold. Widening this is a design decision:
# justify it in charts/proctor/README.md's RBAC table in the same change.
OPERATOR_ALLOWED: dict[tuple[str, str], set[str]] = {
    ("proctor.dev", "experiments"): {"get", "list", "watch"},
    ("proctor.dev", "validationpyramids"): {"get", "list", "watch", "create"},
    ("proctor.dev", "experiments/status"): {"patch"},
    ("proctor.dev", "validationpyramids/status"): {"patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"get", "list"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"get", "list", "watch", "create"},
    ("", "services"): {"create"},
    ("", "configmaps"): {"get", "create", "patch"},
    ("", "serviceaccounts"): {"create"},
    ("", "secrets"): {"create"},
    ("rbac.authorization.k8s.io", "roles"): {"create"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"create"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch", "create"},
    ("", "namespaces"): {"list", "watch"},
}
# The watchdog reads its pod, its logs, its Experiment (and pyramid, for the bundle's results)
# and posts Events. Nothing else, and never Secrets.
WATCHDOG_ALLOWED: dict[tuple[str, str], set[str]] = {
    ("", "pods"): {"get"},
    ("", "pods/log"): {"get"},
    ("proctor.dev", "experiments"): {"get"},
    ("proctor.dev", "validationpyramids"): {"get"},
    ("", "events"): {"create"},
}
# Objects of kinds that no Kubernetes schema describes (the Prometheus operator's, kopf's).
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}

VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "everything-on": [
        "--set", "monitoring.serviceMonitor.enabled=true",
        "--set", "monitoring.podMonitor.enabled=true",
        "--set", "monitoring.prometheusRule.enabled=true",
        "--set", "monitoring.dashboards.enabled=true",
        "--set", "storage.bundleURI=s3://bundles/proctor",
        "--set", "storage.endpoint=http://minio.storage:9000",
        "--set", "storage.existingSecret=proctor-storage",
        "--set", "watchdog.prometheusURL=http://prometheus.monitoring:9090",
        "--set-json", 'watchdog.defaultThresholds={"minMfuRatio":0.3,"maxCheckpointAge":"2h"}',
        "--set", "kueue.defaultQueue=gpu-queue",
    ],
    "namespaced": ["--set", "operator.watchNamespaces={ml,research}"],
    "no-crds-no-peering": [
        "--set", "crds.install=false", "--set", "operator.peering.enabled=false"
    ],
}  # fmt: skip


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        raise AssertionError(f"{HELM} is missing: run `make setup`")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=60)


def render(*args: str) -> list[dict[str, Any]]:
    result = _helm("template", "proctor", str(CHART), "--namespace", "proctor-system", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def _grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _not_allowed(role: dict[str, Any], allowed: dict[tuple[str, str], set[str]]) -> list[str]:
    return sorted(
        f"{verb} {group or 'core'}/{resource}"
        for group, resource, verb in _grants(role)
        if verb not in allowed.get((group, resource), set())
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_chart_lints_strictly(variant):
    result = _helm("lint", "--strict", str(CHART), *VARIANTS[variant])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_is_valid_kubernetes(variant):
    objects = render(*VARIANTS[variant])
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            assert obj["metadata"]["name"]
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_role_gains_a_verb_or_resource_not_on_the_allowed_list(variant):
    objects = render(*VARIANTS[variant])
    roles = _of_kind(objects, "ClusterRole") + _of_kind(objects, "Role")
    assert roles
    for role in roles:
        assert _not_allowed(role, OPERATOR_ALLOWED) == [], role["metadata"]["name"]
        assert not any("resourceNames" in rule for rule in role["rules"])


def test_the_allowed_list_itself_has_no_wildcard_nor_escalation_verb():
    for verbs in [*OPERATOR_ALLOWED.values(), *WATCHDOG_ALLOWED.values()]:
        assert not verbs & {"*", "escalate", "bind", "impersonate", "update"}
    assert not any("*" in key for key in OPERATOR_ALLOWED)
    # The operator may create Secrets (the watchdog's token) but never read one.
    assert OPERATOR_ALLOWED[("", "secrets")] == {"create"}


def test_the_watchdog_role_the_operator_creates_is_least_privilege():
    [role] = [obj for obj in watchdog_access("ml") if obj["kind"] == "Role"]
    assert _not_allowed(role, WATCHDOG_ALLOWED) == []


def test_the_operator_can_create_what_it_creates_and_grant_what_it_grants():
    grants = set().union(*(_grants(role) for role in _of_kind(render(), "ClusterRole")))
    created = [
        *watchdog_access("ml"),  # the watchdog's identity
        {"apiVersion": "batch/v1", "kind": "Job"},  # layer and training Jobs
        {"apiVersion": "v1", "kind": "Service"},  # multi-node rendezvous
        {"apiVersion": "proctor.dev/v1alpha1", "kind": "ValidationPyramid"},
        {"apiVersion": "v1", "kind": "ConfigMap"},  # study digests
        {"apiVersion": "v1", "kind": "Event"},
    ]
    for obj in created:
        group = obj["apiVersion"].rpartition("/")[0]
        assert (group, PLURALS[obj["kind"]], "create") in grants, obj["kind"]
    # Kubernetes refuses a Role granting what its creator does not hold (no escalate verb here).
    [role] = [obj for obj in watchdog_access("ml") if obj["kind"] == "Role"]
    assert _grants(role) <= grants


def test_every_operator_permission_is_justified_in_the_chart_readme():
    readme = (CHART / "README.md").read_text()
    section = readme.split("### The operator's ClusterRole")[1].split("###")[0]
    roles = _of_kind(render(*VARIANTS["namespaced"]), "ClusterRole")
    # A table row: | `resource`, `resource` (group) | verbs | why |
    rows = {
        name: cells[2]
        for line in section.splitlines()
        if line.startswith("| `") and len(cells := line.split("|")) > 3
        for name in re.findall(r"`([^`]+)`", cells[1])
    }
    for rule in (rule for role in roles for rule in role["rules"]):
        for resource in rule["resources"]:
            assert resource in rows, f"{resource} has no row in the chart README's RBAC table"
            for verb in rule["verbs"]:
                assert verb in rows[resource], f"{verb} {resource} is not justified in the README"


def test_the_operator_pod_is_locked_down_and_probed():
    [deployment] = _of_kind(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]
    assert "--all-namespaces" in container["args"]
    assert "--peering=proctor" in container["args"]


def test_values_reach_the_operator_as_the_settings_it_reads():
    [deployment] = _of_kind(render(*VARIANTS["everything-on"]), "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {var["name"]: var["value"] for var in container["env"]}
    # Every setting with a Helm value is set by the chart under the variable the operator reads.
    for field_name, (variable, helm) in VARIABLES.items():
        if helm is not None:
            assert variable in env, f"{helm} does not reach {variable} ({field_name})"
    with mock.patch.dict(os.environ, env, clear=True):
        settings = ControllerSettings.from_env()
    assert settings == ControllerSettings(
        watchdog_image="proctor/watchdog:0.1.0",
        default_bundle_uri="s3://bundles/proctor",
        watchdog_secret="proctor-storage",
        resync_seconds=10.0,
        progress_seconds=15.0,
        default_queue="gpu-queue",
        prometheus_url="http://prometheus.monitoring:9090",
        storage_endpoint="http://minio.storage:9000",
        default_thresholds={"minMfuRatio": 0.3, "maxCheckpointAge": "2h"},
    )
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"  # the operator's own S3 client
    assert container["envFrom"] == [{"secretRef": {"name": "proctor-storage", "optional": True}}]


def test_watching_namespaces_binds_the_operator_only_there():
    objects = render(*VARIANTS["namespaced"])
    bindings = {
        (b["kind"], b["metadata"].get("namespace"), b["roleRef"]["name"])
        for b in _of_kind(objects, "RoleBinding") + _of_kind(objects, "ClusterRoleBinding")
    }
    assert bindings == {
        ("RoleBinding", "ml", "proctor-operator"),
        ("RoleBinding", "research", "proctor-operator"),
        ("ClusterRoleBinding", None, "proctor-operator-cluster"),
    }
    everywhere = render()
    assert {b["roleRef"]["name"] for b in _of_kind(everywhere, "ClusterRoleBinding")} == {
        "proctor-operator",
        "proctor-operator-cluster",
    }
    [cluster] = [
        r for r in _of_kind(everywhere, "ClusterRole") if r["metadata"]["name"].endswith("-cluster")
    ]
    assert ("", "namespaces", "list") not in _grants(cluster)  # only needed for a list


def test_watching_namespaces_scopes_the_operator_the_peering_and_the_pod_monitor():
    objects = render(*VARIANTS["namespaced"], "--set", "monitoring.podMonitor.enabled=true")
    [deployment] = _of_kind(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--namespace=ml", "--namespace=research"} <= set(args)
    assert "--all-namespaces" not in args
    # Peering stays cluster-wide (one object for every namespace), so no per-namespace CRD.
    crds = {crd["metadata"]["name"] for crd in _of_kind(objects, "CustomResourceDefinition")}
    assert "kopfpeerings.kopf.dev" not in crds
    assert "clusterkopfpeerings.kopf.dev" in crds
    [monitor] = _of_kind(objects, "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml", "research"]}


def test_monitoring_objects_are_off_by_default_and_on_when_asked():
    monitoring = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not monitoring & {obj["kind"] for obj in render()}
    on = render(*VARIANTS["everything-on"])
    assert monitoring <= {obj["kind"] for obj in on}
    [monitor] = _of_kind(on, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "proctor",
        "app.kubernetes.io/component": "training",
    }


def test_the_operator_monitor_keeps_the_experiments_namespace_label():
    [monitor] = _of_kind(render(*VARIANTS["everything-on"]), "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True


def test_alerts_link_the_runbooks_where_the_team_serves_them():
    base = "https://wiki.example/proctor/runbooks"
    [rule] = _of_kind(
        render(
            "--set", "monitoring.prometheusRule.enabled=true",
            "--set", f"monitoring.prometheusRule.runbooksURL={base}",
        ),
        "PrometheusRule",
    )  # fmt: skip
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        assert alert["annotations"]["runbook_url"] == f"{base}#{alert['alert'].lower()}"


def test_the_rendered_crds_are_the_generated_ones_and_are_kept():
    rendered = {
        obj["metadata"]["name"]: obj for obj in _of_kind(render(), "CustomResourceDefinition")
    }
    for plural in ("experiments", "validationpyramids"):
        crd = rendered[f"{plural}.proctor.dev"]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        crd["metadata"].pop("annotations")
        assert crd == load_crd(plural)
    peering = rendered["clusterkopfpeerings.kopf.dev"]
    assert peering["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not _of_kind(render("--set", "crds.install=false"), "CustomResourceDefinition")


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("operator.replicas=2", "replicas"),
        ("storage.bundleURI=gs://bucket/x", "bundleURI"),
        ("watchdog.defaultThresholds.stallFactor=3", "stallFactor"),
        ("watchdog.defaultThresholds.minMfuRatio=3", "minMfuRatio"),
        ("kueue.defaultQueue=Not_A_Name", "defaultQueue"),
        ("monitoring.podMonitor.enable=true", "enable"),
        ("monitoring.prometheusRule.runbooksURL=wiki/runbooks", "runbooksURL"),
    ],
)
def test_a_typo_or_a_bad_value_fails_at_install(setting, says):
    result = _helm("template", "proctor", str(CHART), "--set", setting)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert says in result.stderr


def test_notes_tell_the_installer_the_next_three_commands():
    result = _helm("install", "proctor", str(CHART), "--dry-run=client", "--namespace", "ml")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    for command in (
        "kubectl -n ml rollout status deployment/proctor-operator",
        "kubectl explain experiment.spec",
        "kubectl get experiments -w",
    ):
        assert command in notes


def test_the_values_schema_uses_the_apis_own_patterns():
    """The schema repeats three patterns of the API and the settings (JSON has no imports)."""
    import json

    from proctor.api.v1alpha1._base import DURATION_PATTERN, STORAGE_URI_PATTERN
    from proctor.controller.settings import DNS_LABEL

    schema = json.loads((CHART / "values.schema.json").read_text())
    props = schema["properties"]
    bundle = props["storage"]["properties"]["bundleURI"]["pattern"]
    assert bundle == "^(" + STORAGE_URI_PATTERN.removeprefix("^").removesuffix("$") + ")?$"
    age = props["watchdog"]["properties"]["defaultThresholds"]["properties"]["maxCheckpointAge"]
    assert age["pattern"] == DURATION_PATTERN
    assert schema["definitions"]["dnsLabel"]["pattern"] == f"^{DNS_LABEL}$"
