"""An agent's loop, end to end: the real operator drives Experiments on the emulated cluster, the
watchdog writes a real bundle, and the agent works only through `proctor` verbs (as a subprocess,
reading --output json) and through `proctor mcp` with the MCP SDK's own client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
import yaml
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from tests.agent.real_bundle import write_bundle
from tests.support.cluster import RunningCluster, running_cluster
from tests.support.crd_schema import REPO
from tests.support.operator import OperatorProcess, digits_experiment, wait_for

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(300)]
CARELESS = REPO / "tests" / "watchdog" / "code"
PROCTOR = [sys.executable, "-m", "proctor.cli.main"]
TOOLS = {"submit", "status", "wait", "bundles", "fetch_bundle", "conclude", "study"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> RunningCluster:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as handle:
        handle.kubectl("apply", "-f", "crds/")
        yield handle


@pytest.fixture(scope="module")
def operator(cluster, tmp_path_factory) -> OperatorProcess:
    process = OperatorProcess(cluster, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()


def proctor(cluster, *args: str) -> tuple[int, dict, str]:
    """Run a `proctor` verb with --output json: exit code, the JSON on stdout, stderr."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    result = subprocess.run(
        [*PROCTOR, *args, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    try:
        body = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"not JSON: {result.stdout!r}\n{result.stderr}") from None
    return result.returncode, body, result.stderr


def manifest(tmp: Path, name: str, **changes) -> Path:
    document = digits_experiment(name, tmp, **changes)
    document["metadata"].pop("labels", None)  # no study: each test's experiment stands alone
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def careless(tmp_path_factory) -> tuple[Path, Path]:
    """A manifest whose loss turns NaN at step 30, and where its bundles go."""
    tmp = tmp_path_factory.mktemp("careless")
    bundles = tmp / "bundles"
    path = manifest(
        tmp,
        "careless",
        code={
            "entrypoint": "careless_nan:setup",
            "config": {"jump_at": 30},
            "env": [{"name": "PYTHONPATH", "value": str(CARELESS)}],
        },
        validation={"skip": {"reason": "the agent tools are under test, not the code"}},
        training={"budget": {"maxSteps": 5000, "maxDuration": "3m"}},
        watchdog={"schedule": {"denseInterval": "1s", "warmup": "1m"}},
        recovery={"bundleURI": bundles.as_uri(), "onAnomaly": "StopTraining"},
    )
    return path, bundles


def test_an_agent_runs_the_loop_through_the_cli(cluster, operator, careless, tmp_path):
    path, bundles = careless
    invalid = REPO / "examples" / "invalid" / "negative-budget.yaml"
    code, body, _ = proctor(cluster, "submit", str(invalid))
    assert code == 1
    assert body["hint"]
    assert any(d.startswith("spec.training.budget.maxSteps") for d in body["details"]), body

    code, body, _ = proctor(cluster, "submit", str(path))
    assert code == 0, body
    assert body["submitted"][0]["name"] == "careless"

    code, body, _ = proctor(
        cluster,
        *("conclude", "careless", "--verdict", "effective"),
        *("--evidence", "accuracy 0.97 at step 300", "--learnings", "none"),
    )
    assert code == 1
    assert "only after the run has ended" in body["error"], body

    code, body, progress = proctor(
        cluster, "wait", "careless", "--for", "Succeeded", "--timeout", "200", "--interval", "0.5"
    )
    assert code == 3, (body, progress, operator.output()[-2000:])
    assert body["outcome"] == "ended"
    assert body["reached"] is False
    assert body["status"]["phase"] == "Failed"
    assert "careless: Training" in progress, progress

    def anomalous() -> dict | None:  # the trainer may die before the Event is mirrored
        code, body, _ = proctor(cluster, "status", "careless")
        assert code == 0, body
        return body if body["anomalies"] else None

    try:
        body = wait_for(anomalous, 60, "the anomaly in status", interval=1)
    except AssertionError as exc:
        written = sorted(str(p) for p in bundles.rglob("*"))
        raise AssertionError(f"{exc}\nbundles: {written}\n{operator.output()[-3000:]}") from None
    [anomaly, *_] = body["anomalies"]
    assert anomaly["kind"] == "NonFiniteLoss"
    assert anomaly["bundleURI"].startswith(bundles.as_uri())
    assert "proctor bundles careless" in body["next"]

    def listed() -> dict | None:
        code, body, _ = proctor(cluster, "bundles", "careless")
        assert code == 0, body
        stored = [b for b in body["bundles"] if b["inStorage"] and b["inStatus"]]
        return body if stored else None

    body = wait_for(listed, 60, "the bundle in status and in storage", interval=1)
    newest = body["bundles"][-1]
    assert newest["kind"] == "NonFiniteLoss"
    assert newest["summary"]

    code, body, _ = proctor(cluster, "bundle", "fetch", newest["uri"], str(tmp_path / "bundle"))
    assert code == 0, body
    assert sorted(body["files"]) == ["bundle.json", "metrics.png", "recovery.md"]
    assert (tmp_path / "bundle" / "recovery.md").read_text().startswith("#")

    # An anomaly stopped this run: the operator refuses a verdict that ignores it.
    code, body, _ = proctor(
        cluster,
        *("conclude", "careless", "--verdict", "effective"),
        *("--evidence", "accuracy 0.97 at step 300", "--learnings", "none"),
    )
    assert code == 1, body
    assert "refused the conclusion" in body["error"]
    code, body, _ = proctor(
        cluster,
        *("conclude", "careless", "--verdict", "inconclusive"),
        *("--evidence", f"loss went NaN at step 31, see {newest['uri']}"),
        *("--learnings", "lower the learning rate jump before testing width"),
    )
    assert code == 0, body
    assert body["phase"] == "Concluded"

    text = subprocess.run(
        [*PROCTOR, "status", "careless"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        check=True,
    ).stdout
    assert "Experiment careless (namespace default): Concluded" in text
    assert "next: concluded" in text


async def _mcp_session(cluster, tmp_path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "proctor.cli.main", "mcp", "--namespace", "default"],
        env={"KUBECONFIG": str(cluster.kubeconfig), "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        cwd=str(REPO),
    )
    async with stdio_client(params) as streams, ClientSession(*streams) as session:
        await session.initialize()
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} == TOOLS
        wait_tool = next(t for t in tools.tools if t.name == "wait")
        assert "Blocked" in (wait_tool.description or "")

        healthy = manifest(
            tmp_path,
            "quick",
            validation={"skip": {"reason": "the agent tools are under test, not the code"}},
            training={"budget": {"maxSteps": 40, "maxDuration": "3m"}},
            recovery={"bundleURI": (tmp_path / "bundles").as_uri()},
        )
        result = await session.call_tool("submit", {"manifest": healthy.read_text()})
        assert not result.is_error, result.content
        assert result.structured_content["submitted"][0]["name"] == "quick"

        seen: list[tuple[float, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, message))

        result = await session.call_tool(
            "wait",
            {"name": "quick", "phases": ["Succeeded"], "timeout": 200},
            progress_callback=on_progress,
        )
        assert not result.is_error, result.content
        assert result.structured_content["reached"] is True
        assert result.structured_content["status"]["training"]["step"] == 40
        assert seen, "wait sent no progress notification"
        assert [p for p, _ in seen] == sorted(p for p, _ in seen)
        assert any(m and m.startswith("Succeeded") for _, m in seen), seen

        # A teaching error: evidence without numbers names the rule and the fix.
        result = await session.call_tool(
            "conclude",
            {"name": "quick", "verdict": "effective", "evidence": "looks good", "learnings": "x"},
        )
        assert result.is_error
        text = result.content[0].text
        assert "must cite numbers" in text
        assert "hint:" in text

        result = await session.call_tool(
            "conclude",
            {
                "name": "quick",
                "verdict": "effective",
                "evidence": "trained 40 steps, no anomaly",
                "learnings": "the pipeline works end to end",
            },
        )
        assert not result.is_error, result.content
        assert result.structured_content["phase"] == "Concluded"

        result = await session.call_tool("status", {"name": "nobody"})
        assert result.is_error
        assert "no Experiment nobody" in result.content[0].text

        templates = await session.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == [
            "proctor://experiments/{namespace}/{name}/recovery"
        ]
        # The run was healthy; a bundle the watchdog's own code writes into its store stands
        # in for an anomaly, so the resource is read from a real bundle directory.
        missing = await _read_error(session, "proctor://experiments/default/quick/recovery")
        assert "no recovery bundle" in missing
        write_bundle(tmp_path / "bundles", "default", "quick", datetime.now(UTC), step=17)
        resource = await session.read_resource("proctor://experiments/default/quick/recovery")
        prompt = resource.contents[0].text
        assert "NonFiniteLoss" in prompt
        assert "AdjustHyperparameters" in prompt


async def _read_error(session: ClientSession, uri: str) -> str:
    try:
        await session.read_resource(uri)
    except MCPError as exc:
        return str(exc)
    raise AssertionError(f"reading {uri} succeeded")


def test_the_mcp_tools_round_trip_through_the_sdk_client(cluster, operator, tmp_path):
    anyio.run(_mcp_session, cluster, tmp_path)
