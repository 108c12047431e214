"""Proctor's Prometheus rules: valid for the real promtool, unit-tested by it (every recording rule,
every alert firing and not firing: proctor.rules.test.yaml), documented (summary, description and
a runbook section each), and installed unchanged by the chart's PrometheusRule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts/proctor/files/rules/proctor.rules.yaml"
UNIT_TESTS = Path(__file__).with_name("proctor.rules.test.yaml")
RUNBOOKS = REPO / "docs/runbooks.md"
HELM = REPO / ".bin/helm"

# The names dashboards query: renaming one breaks them.
RECORDED = {
    "proctor:experiment_mfu:ratio",
    "proctor:experiment_gpu_utilization:ratio",
    "proctor:experiment_tensor_active:ratio",
    "proctor:experiment_framebuffer_used:ratio",
}

pytestmark = pytest.mark.slow


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        raise AssertionError(
            "promtool is not installed: `make setup` installs it as root (apt-get install "
            "prometheus)"
        )
    return found


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_promtool_accepts_the_rule_file() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", UNIT_TESTS.name],
        cwd=UNIT_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_unit_test() -> None:
    """Each alert is tested both firing and not firing; each recording rule by its samples."""
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for test in case.get("alert_rule_test") or []:
            (firing if test.get("exp_alerts") else silent).add(test["alertname"])
    alerts = {rule["alert"] for rule in _alerts()}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested not firing"
    expressions = " ".join(
        test["expr"] for case in cases for test in case.get("promql_expr_test") or []
    )
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    assert RECORDED - recorded == set(), "a name the dashboards query is not recorded"
    assert {name for name in recorded if name not in expressions} == set()


def test_every_alert_has_a_summary_a_description_and_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOKS.read_text())
    for alert in _alerts():
        annotations = alert.get("annotations") or {}
        name = alert["alert"]
        assert annotations.get("summary"), name
        assert "$value" in annotations.get("description", ""), f"{name}: give the numbers"
        url = annotations.get("runbook_url", "")
        assert url.startswith("docs/runbooks.md#"), name
        assert url.split("#", 1)[1] in anchors, f"{name}: no section {url} in docs/runbooks.md"
        assert alert.get("labels", {}).get("severity") in ("warning", "critical"), name


def test_the_anchor_reader_sees_only_real_headings() -> None:
    anchors = _anchors("# Runbooks: all\n## ProctorFatalXID\ntext ## NotAHeading\n")
    assert anchors == {"runbooks-all", "proctorfatalxid"}


def _helm_template(*values: str) -> list[dict[str, Any]]:
    if not HELM.exists():
        raise AssertionError(f"{HELM} is missing: `make setup` installs helm there")
    command = [str(HELM), "template", "proctor", str(REPO / "charts/proctor")]
    for value in values:
        command += ["--set", value]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_chart_installs_the_rule_file_as_a_prometheusrule() -> None:
    docs = _helm_template(
        "monitoring.prometheusRule.enabled=true", "monitoring.prometheusRule.labels.release=kps"
    )
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == "proctor"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_the_chart_installs_no_prometheusrule_unless_asked() -> None:
    # The Prometheus operator's CRDs may be absent: the default must not need them.
    assert [d for d in _helm_template() if d["kind"] == "PrometheusRule"] == []
