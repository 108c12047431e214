"""Writing a study's digest when it is due: the effects around proctor.controller.study_digest.

Level-triggered and restart-safe: the ConfigMap `proctor-study-<study>` records how many
concluded experiments the last digest covered, so a restarted operator neither skips a digest
nor writes one twice.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from proctor.api.studies import (
    DIGEST_FILE,
    RESULTS_FILE,
    STUDY_LABEL,
    configmap_name,
    digest_every,
    study_prefix,
)
from proctor.api.v1alpha1 import API_VERSION
from proctor.controller import study_digest
from proctor.controller.settings import ControllerSettings
from proctor.kube import KubeClient
from proctor.storage import open_store

logger = logging.getLogger(__name__)


class StudyDigests:
    def __init__(
        self,
        kube: KubeClient,
        settings: ControllerSettings,
        store_opener: Callable[[str], Any] = open_store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube, self.settings = kube, settings
        self.open_store, self.clock = store_opener, clock
        # Two members of a study can conclude at once (kopf reconciles objects concurrently):
        # one writer per study, so the second sees what the first recorded.
        self._locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    def check(self, experiment: dict[str, Any]) -> bool:
        """Write the digest of `experiment`'s study if one is due; True when it wrote one."""
        study = (experiment["metadata"].get("labels") or {}).get(STUDY_LABEL)
        if not study:
            return False
        namespace = experiment["metadata"]["namespace"]
        with self._locks_guard:
            lock = self._locks[(namespace, study)]
        with lock:
            return self._check(experiment, namespace, study)

    def _check(self, experiment: dict[str, Any], namespace: str, study: str) -> bool:
        members = self.kube.select(API_VERSION, "Experiment", namespace, {STUDY_LABEL: study})
        table = study_digest.rows(members)
        name = configmap_name(study)
        configmap = self.kube.get("v1", "ConfigMap", namespace, name)
        data = (configmap or {}).get("data") or {}
        recorded = int(data["concluded"]) if str(data.get("concluded", "")).isdigit() else 0
        every = digest_every(configmap, members)
        if not study_digest.due(len(table), recorded, every):
            return False
        root = self.settings.default_bundle_uri or (
            ((experiment.get("spec") or {}).get("recovery") or {}).get("bundleURI")
        )
        if not root:
            logger.warning(
                "study %s/%s: a digest is due but there is no object storage to write it to "
                "(set the operator's bundle URI, storage.bundleURI in the chart)",
                namespace,
                study,
            )
            return False
        prefix = study_prefix(root, namespace, study)
        store = self.open_store(prefix)
        store.put(RESULTS_FILE, study_digest.results_tsv(table).encode())
        store.put(DIGEST_FILE, study_digest.digest_md(study, table).encode())
        fresh = {
            "resultsURI": f"{prefix}/{RESULTS_FILE}",
            "digestURI": f"{prefix}/{DIGEST_FILE}",
            "concluded": str(len(table)),
            "updated": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if configmap is None:
            created = self.kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": {
                            "app.kubernetes.io/managed-by": "proctor",
                            STUDY_LABEL: study,
                        },
                    },
                    "data": fresh,
                }
            )
            if not created:  # another operator (a peer before failover) or a person made it
                self.kube.patch("v1", "ConfigMap", namespace, name, {"data": fresh})
        else:  # a merge patch keeps what a person set there (digestEvery)
            self.kube.patch("v1", "ConfigMap", namespace, name, {"data": fresh})
        logger.info(
            "study %s/%s: digest of %d experiments at %s", namespace, study, len(table), prefix
        )
        return True
