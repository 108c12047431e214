"""The library against a real (emulated) API server, with no operator: what the API server
refuses, what storage holds, and what status says are read as they are. The operator's part of
status is written through the status subresource, as the operator writes it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
import yaml
from mcp import Client

from proctor.agent import waiting
from proctor.agent.bundles import fetch_bundle, list_bundles
from proctor.agent.conclusion import conclude
from proctor.agent.errors import AgentError
from proctor.agent.study import configmap_name, study
from proctor.agent.submit import submit
from proctor.mcpserver.server import build_server
from tests.agent.real_bundle import at, write_bundle
from tests.support.crd_schema import REPO

pytestmark = pytest.mark.kubectl
DIGITS = REPO / "examples" / "digits" / "experiment.yaml"


def manifest(tmp_path: Path, name: str, **spec) -> Path:
    document = yaml.safe_load(DIGITS.read_text())
    document["metadata"]["name"] = name
    document["spec"].update(spec)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_submit_creates_once_and_a_second_submit_of_the_name_teaches_a_new_name(
    connection, tmp_path
):
    result = submit(connection, manifest(tmp_path, "first"))
    [created] = result.submitted
    assert (created.kind, created.name, created.namespace) == ("Experiment", "first", "default")
    assert created.uid
    with pytest.raises(AgentError) as caught:
        submit(connection, manifest(tmp_path, "first"))
    assert "exists already" in caught.value.message
    assert "inspiredBy" in caught.value.hint


def test_a_conclusion_before_the_run_ended_is_refused_with_the_api_servers_reason(
    connection, tmp_path
):
    submit(connection, manifest(tmp_path, "early"))
    with pytest.raises(AgentError) as caught:
        conclude(connection, "early", "effective", "acc 0.96 at step 300", "none", settle=0)
    assert "only after the run has ended" in caught.value.message
    assert "proctor wait early" in caught.value.hint


def test_a_conclusion_after_the_run_is_written_as_a_merge_patch_of_the_conclusion_alone(
    api, connection, tmp_path
):
    submit(connection, manifest(tmp_path, "ended"))
    api.patch_status("exp/ended", {"phase": "Succeeded"})
    result = conclude(connection, "ended", "ineffective", "acc 0.91 vs 0.95", "go deeper", settle=0)
    assert result.conclusion.verdict == "ineffective"
    assert result.phase == "Succeeded"  # no operator here to mark it Concluded
    stored = json.loads(api.kubectl("get", "exp/ended", "-o", "json").stdout)
    assert stored["spec"]["conclusion"] == {
        "verdict": "ineffective",
        "evidence": "acc 0.91 vs 0.95",
        "learnings": "go deeper",
    }
    assert stored["spec"]["training"]["budget"]["maxSteps"] == 300  # the rest untouched


def test_bundles_are_the_union_of_status_and_storage_oldest_first_and_fetch_downloads_one(
    api, connection, tmp_path
):
    store = tmp_path / "bundles"
    submit(connection, manifest(tmp_path, "nan", recovery={"bundleURI": store.as_uri()}))
    mirrored = write_bundle(store, "default", "nan", at(10), step=31, key="a")
    unmirrored = write_bundle(store, "default", "nan", at(20), step=62, key="b")
    api.patch_status(
        "exp/nan",
        {
            "phase": "Training",
            "anomalyCount": 1,
            "anomalies": [
                {
                    "kind": "NonFiniteLoss",
                    "severity": "Critical",
                    "time": "2026-11-22T08:10:00Z",
                    "step": 31,
                    "message": "loss is nan at step 31",
                    "bundleURI": mirrored,
                }
            ],
        },
    )
    listing = list_bundles(connection, "nan")
    assert [b.uri for b in listing.bundles] == [mirrored, unmirrored]
    first, second = listing.bundles
    assert (first.in_status, first.in_storage) == (True, True)
    assert (second.in_status, second.in_storage) == (False, True)
    assert (second.kind, second.step, second.severity) == ("NonFiniteLoss", 62, "Critical")
    assert second.summary == "loss is nan at step 62"
    assert listing.searched == [f"{store.as_uri()}/default/nan"]
    assert unmirrored in listing.next

    fetched = fetch_bundle(unmirrored, tmp_path / "fetched")
    assert sorted(fetched.files) == ["bundle.json", "metrics.png", "recovery.md"]
    prompt = Path(str(fetched.recovery_prompt)).read_text()
    assert "AdjustHyperparameters" in prompt
    assert json.loads((tmp_path / "fetched" / "bundle.json").read_text())["finding"]["step"] == 62


def test_fetching_a_place_that_holds_no_bundle_says_where_to_find_one(tmp_path):
    empty = tmp_path / "store" / "default" / "nan" / "20261122T081000Z-NonFiniteLoss-0a1b2c"
    empty.mkdir(parents=True)
    with pytest.raises(AgentError) as caught:
        fetch_bundle(empty.as_uri(), tmp_path / "out")
    assert "no bundle at" in caught.value.message
    assert "proctor bundles NAME" in caught.value.hint


def test_study_without_a_digest_says_when_one_is_written(api, connection, tmp_path):
    with pytest.raises(AgentError) as caught:
        study(connection, "vision")
    assert caught.value.message == (
        "no digest yet for study vision: it is written every 10 concluded experiments; "
        "0 of its 0 experiments are concluded so far"
    )
    assert "proctor.dev/study=vision" in caught.value.hint


def test_study_without_a_digest_counts_its_members_and_reads_their_period(
    api, connection, tmp_path
):
    path = manifest(tmp_path, "speech-1")
    document = yaml.safe_load(path.read_text())
    document["metadata"]["labels"] = {"proctor.dev/study": "speech"}
    document["metadata"]["annotations"] = {"proctor.dev/digest-every": "3"}
    path.write_text(yaml.safe_dump(document))
    submit(connection, path)
    api.patch_status("exp/speech-1", {"phase": "Concluded"})
    with pytest.raises(AgentError) as caught:
        study(connection, "speech")
    assert caught.value.message == (
        "no digest yet for study speech: it is written every 3 concluded experiments; "
        "1 of its 1 experiments are concluded so far"
    )


def test_study_reads_the_digest_the_configmap_links(api, connection, tmp_path):
    where = tmp_path / "studies" / "digits"
    where.mkdir(parents=True)
    (where / "digest.md").write_text("# Study digits\n\nBest: wide (0.97)\n")
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap_name("digits")},
        "data": {
            "digestURI": (where / "digest.md").as_uri(),
            "resultsURI": (where / "results.tsv").as_uri(),
            "concluded": "10",
            "updated": "2026-11-22T08:00:00Z",
        },
    }
    api.kubectl("apply", "-f", "-", input=json.dumps(configmap))
    digest = study(connection, "digits")
    assert digest.digest.startswith("# Study digits")
    assert digest.concluded == 10
    assert digest.as_json()["digestURI"] == (where / "digest.md").as_uri()


def _threads_inside_wait() -> int:
    """How many threads are running proctor.agent.waiting.wait right now."""
    count = 0
    for frame in sys._current_frames().values():
        stack = frame
        while stack is not None:
            if stack.f_code is waiting.wait.__code__:
                count += 1
                break
            stack = stack.f_back
    return count


def test_a_cancelled_mcp_wait_stops_polling_and_the_session_keeps_serving(
    api, connection, tmp_path
):
    """No operator runs here, so the experiment never moves: only cancelling ends the wait."""
    submit(connection, manifest(tmp_path, "still"))

    async def session() -> tuple[int, str]:
        async with Client(build_server("default")) as client:
            # timeout 60: without cancellation the wait would end by itself after a minute,
            # and the test fail, rather than hang for the tool's default half hour.
            with anyio.move_on_after(2.0) as scope:
                arguments = {"name": "still", "phases": ["Succeeded"], "timeout": 60}
                await client.call_tool("wait", arguments)
            assert scope.cancelled_caught, "the wait returned although nothing could move"
            for _ in range(50):  # the server's worker thread sees the cancel within one poll
                if _threads_inside_wait() == 0:
                    break
                await anyio.sleep(0.1)
            still_waiting = _threads_inside_wait()
            result = await client.call_tool("status", {"name": "still"})
            return still_waiting, result.structured_content["phase"]

    still_waiting, phase = anyio.run(session)
    assert still_waiting == 0, "the cancelled wait is still polling the API server"
    assert phase == "Pending"
