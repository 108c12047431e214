"""StudyDigests against the emulated API server: one writer per study, a ConfigMap someone else
created in the meantime is patched rather than lost, and each study has a ConfigMap of its own."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from proctor.api.studies import DIGEST_FILE, STUDY_LABEL, configmap_name
from proctor.controller.settings import ControllerSettings
from proctor.controller.studies import StudyDigests
from proctor.kube import KubeClient
from proctor.storage import open_store
from tests.unit.controller.objects import experiment

pytestmark = pytest.mark.kubectl


@pytest.fixture
def kube(with_crds) -> KubeClient:
    return KubeClient(config.new_client_from_config(config_file=str(with_crds.kubeconfig)))


def _concluded(cluster, name: str, study: str) -> dict[str, Any]:
    """An Experiment of `study`, concluded, as the operator would have left it."""
    obj = experiment(name)
    obj["metadata"] = {"name": name, "namespace": "default", "labels": {STUDY_LABEL: study}}
    obj["metadata"]["annotations"] = {"proctor.dev/digest-every": "1"}
    obj["spec"]["conclusion"] = {"verdict": "ineffective", "evidence": "acc 0.91", "learnings": "x"}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    cluster.patch_status(f"experiment/{name}", {"phase": "Concluded"})
    return json.loads(cluster.kubectl("get", f"experiment/{name}", "-o", "json").stdout)


class SlowStore:
    """A real file store whose writes take a while, so concurrent writers overlap; `during`
    runs inside the first write (what another actor does meanwhile)."""

    def __init__(self, root: Path, during: Any = None) -> None:
        self.root, self.during, self.writes = root, during, 0
        self.lock = threading.Lock()

    def __call__(self, uri: str) -> Any:
        store = open_store(uri)
        outer = self

        class Slow:
            def put(self, key: str, data: bytes) -> None:
                with outer.lock:
                    outer.writes += 1
                    first = outer.writes == 1
                if first and outer.during is not None:
                    outer.during()
                time.sleep(0.2)
                store.put(key, data)

        return Slow()


def _settings(tmp_path: Path) -> ControllerSettings:
    return ControllerSettings(default_bundle_uri=(tmp_path / "bundles").as_uri())


def test_members_concluding_at_once_write_one_digest(with_crds, kube, tmp_path):
    member = _concluded(with_crds, "once", "together")
    store = SlowStore(tmp_path)
    digests = StudyDigests(kube, _settings(tmp_path), store_opener=store)
    wrote: list[bool] = []
    threads = [
        threading.Thread(target=lambda: wrote.append(digests.check(member))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wrote) == [False, False, False, True], "one digest per due count"
    assert store.writes == 2  # results.tsv and digest.md, once


def test_a_configmap_created_meanwhile_is_patched_and_keeps_what_a_person_set(
    with_crds, kube, tmp_path
):
    member = _concluded(with_crds, "raced", "raced")
    name = configmap_name("raced")

    def person_creates_it() -> None:
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"},
            "data": {"digestEvery": "1"},
        }
        with_crds.kubectl("apply", "-f", "-", input=json.dumps(configmap))

    digests = StudyDigests(kube, _settings(tmp_path), SlowStore(tmp_path, person_creates_it))
    assert digests.check(member)
    data = json.loads(with_crds.kubectl("get", f"configmap/{name}", "-o", "json").stdout)["data"]
    assert data["digestEvery"] == "1"
    assert data["concluded"] == "1"
    assert data["digestURI"].endswith(f"/default/studies/raced/{DIGEST_FILE}")


def test_studies_whose_names_differ_only_in_spelling_have_configmaps_of_their_own():
    assert configmap_name("lr-sweep") == "proctor-study-lr-sweep"
    names = {configmap_name(study) for study in ("A", "a", "x_y", "x.y", "x-y", "__", "_-_")}
    assert len(names) == 7
    for name in names:
        assert len(name) <= 253
        assert name == name.lower()
        assert all(part and part[0].isalnum() and part[-1].isalnum() for part in name.split("."))
