"""The watchdog's loop: read the sources, judge, report each new incident once.

Reporting an incident means: a bundle (spooled, then uploaded) and an Event on the Experiment
naming it, which the operator mirrors into status.anomalies. The watchdog writes nothing else to
the cluster: it never changes the Job, the pod or the Experiment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proctor.api.anomaly_events import anomaly_event
from proctor.api.bundle import ContainerState, PodState
from proctor.api.layout import LayoutError, bundle_location, checkpoint_directory, experiment_prefix
from proctor.api.redaction import known_secrets, redact
from proctor.api.v1alpha1 import Anomaly, duration_seconds
from proctor.api.v1alpha1.experiment import Budget, CheckpointSpec, WatchdogSpec
from proctor.storage import open_store
from proctor.watchdog import dcgm
from proctor.watchdog.bundles import build_bundle, bundle_directory, bundle_files
from proctor.watchdog.detectors import detect_all
from proctor.watchdog.observations import Context, Finding, Window
from proctor.watchdog.schedule import next_interval
from proctor.watchdog.spool import Spool
from proctor.watchdog.trainer import JsonLinesTail, read_trainer

logger = logging.getLogger(__name__)
TRAINER_CONTAINER = "trainer"
API_VERSION = "proctor.dev/v1alpha1"


@dataclass
class WatchdogConfig:
    """Everything the operator passes the sidecar (PROCTOR_* variables)."""

    experiment: str
    namespace: str
    pod: str | None
    metrics_url: str
    metrics_file: Path | None
    bundle_uri: str | None  # the experiment's own prefix: <base>/<namespace>/<name>
    checkpoint_uri: str | None
    spool_dir: Path
    spec: WatchdogSpec = field(default_factory=WatchdogSpec)
    budget: Budget | None = None
    checkpoint: CheckpointSpec | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WatchdogConfig:
        env = dict(os.environ if env is None else env)

        def parsed(name: str) -> Any:
            return json.loads(env[name]) if env.get(name) else None

        spec = WatchdogSpec.model_validate(parsed("PROCTOR_WATCHDOG") or {})
        budget, checkpoint = parsed("PROCTOR_BUDGET"), parsed("PROCTOR_CHECKPOINT")
        return cls(
            experiment=env.get("PROCTOR_EXPERIMENT", "local"),
            namespace=env.get("PROCTOR_NAMESPACE", "default"),
            pod=env.get("POD_NAME"),
            metrics_url=env.get(
                "PROCTOR_METRICS_URL",
                f"http://127.0.0.1:{spec.metric_sources.trainer_metrics_port}/metrics",
            ),
            metrics_file=Path(env["PROCTOR_METRICS_FILE"])
            if env.get("PROCTOR_METRICS_FILE")
            else None,
            bundle_uri=env.get("PROCTOR_BUNDLE_URI") or None,
            checkpoint_uri=env.get("PROCTOR_CHECKPOINT_URI") or None,
            spool_dir=Path(env.get("PROCTOR_SPOOL_DIR", "/var/spool/proctor")),
            spec=spec,
            budget=Budget.model_validate(budget) if budget else None,
            checkpoint=CheckpointSpec.model_validate(checkpoint) if checkpoint else None,
        )


class Watchdog:
    def __init__(
        self,
        config: WatchdogConfig,
        kube: Any | None,
        *,
        clock: Callable[[], float] = time.time,
        store_opener: Callable[[str], Any] = open_store,
        upload_retry_seconds: float = 5.0,
    ) -> None:
        self.config = config
        self.kube = kube  # a proctor.kube.KubeClient, or None outside a cluster
        self.clock = clock
        self.started = clock()
        self.window = Window()
        self.tail = JsonLinesTail(config.metrics_file) if config.metrics_file else None
        self._open_store = store_opener
        self.spool = Spool(config.spool_dir, store_opener, base_delay=upload_retry_seconds)
        self.reported = set(self.spool.reported())
        self.notes: dict[str, str] = {}  # degraded sources, by source
        # Its own credentials, and the trainer's Secret-held values the operator passed along
        # (PROCTOR_REDACT_*), also as JSON writes them (quotes, backslashes, non-ASCII escaped).
        self._secrets = known_secrets(os.environ)
        self._experiment: dict[str, Any] | None = None
        self._pending_events: list[dict[str, Any]] = []
        self.bundle_prefix = self._own_prefix(config)
        self.trainer_exited = False
        self.trainer_exit_code: int | None = None

    def _own_prefix(self, config: WatchdogConfig) -> str | None:
        """The experiment's own bundle prefix, `<base>/<namespace>/<experiment>`, as the
        operator passed it; None (no bundles, said in a WatchdogDegraded Event) when it is not
        exactly that: bundles are written under the experiment's own prefix or not at all."""
        if not config.bundle_uri:
            return None
        prefix = config.bundle_uri.rstrip("/")
        own = f"/{config.namespace}/{config.experiment}"
        try:
            if not prefix.endswith(own):
                raise LayoutError(f"it does not end in {own}")
            canonical = experiment_prefix(
                prefix.removesuffix(own), config.namespace, config.experiment
            )
            if canonical != prefix:
                raise LayoutError(f"it is not written as {canonical}")
            return canonical
        except LayoutError as exc:
            self._degraded(
                "bundles",
                f"bundle URI {config.bundle_uri!r} refused ({exc}); no bundle is written: "
                "the operator passes <bundle uri>/<namespace>/<experiment>",
            )
            return None

    # ---- one check -------------------------------------------------------------------------

    def check(self) -> list[Finding]:
        """Read every source once, judge, report new incidents; the findings reported now."""
        now = self.clock()
        config = self.config
        self._read_trainer(now)
        if self.tail is not None:
            for point in self.tail.read():
                self.window.add_loss(point)
        self._read_gpus(now)
        pod = self._read_pod()
        context = Context(
            now=now,
            started=self.started,
            warmup_seconds=float(duration_seconds(config.spec.schedule.warmup)),
            checkpoint_every_seconds=float(duration_seconds(config.checkpoint.every_duration))
            if config.checkpoint
            else None,
            checkpoint_every_steps=config.checkpoint.every_steps if config.checkpoint else None,
            trainer_exited=self.trainer_exited,
            trainer_exit_code=self.trainer_exit_code,
        )
        new = []
        thresholds = config.spec.thresholds
        for finding in detect_all(self.window, thresholds, context, thresholds.detect_plateau):
            if finding.key in self.reported:
                continue
            self._report(finding, now, pod)
            new.append(finding)
        self._post_pending_events()
        self.spool.flush()
        return new

    def _read_trainer(self, now: float) -> None:
        config = self.config
        sample = read_trainer(config.metrics_url, config.experiment, config.namespace, now)
        if sample.unreadable:
            # A damaged scrape is a gap, not a reading: it is kept out of every judgement and said.
            self._degraded("trainer", f"trainer metrics unreadable ({sample.unreadable})")
        else:
            self.notes.pop("trainer", None)
        self.window.add_trainer(sample)

    def _read_gpus(self, now: float) -> None:
        sources = self.config.spec.metric_sources
        pod = self.config.pod or ""
        try:
            if sources.prometheus_url:
                samples = dcgm.read_prometheus(sources.prometheus_url, pod, self.config.namespace)
            elif sources.dcgm_exporter_url:
                samples = dcgm.read_exporter(sources.dcgm_exporter_url, pod, self.config.namespace)
            else:
                return
        except dcgm.DcgmUnavailable as exc:
            self._degraded(
                "dcgm", f"GPU metrics unavailable ({exc}); judging from the trainer's own metrics"
            )
            return
        self.notes.pop("dcgm", None)
        self.window.add_gpus(samples)

    def _read_pod(self) -> PodState | None:
        if self.kube is None or not self.config.pod:
            return None
        try:
            pod = self.kube.get("v1", "Pod", self.config.namespace, self.config.pod)
        except Exception as exc:  # the API server is not essential to judging a run
            self._degraded("kubernetes", f"pod state unavailable ({exc})")
            return None
        if pod is None:
            return None
        status = pod.get("status") or {}
        containers = []
        for entry in (status.get("containerStatuses") or []) + (
            status.get("initContainerStatuses") or []
        ):
            state = entry.get("state") or {}
            kind = next(iter(state), "unknown")
            detail = state.get(kind) or {}
            containers.append(
                ContainerState(
                    name=entry["name"],
                    state=kind,
                    reason=detail.get("reason"),
                    exit_code=detail.get("exitCode"),
                    restarts=entry.get("restartCount", 0),
                )
            )
            if entry["name"] == TRAINER_CONTAINER and kind == "terminated":
                self.trainer_exited = True
                self.trainer_exit_code = detail.get("exitCode")
        return PodState(
            name=pod["metadata"]["name"],
            phase=status.get("phase"),
            node=(pod.get("spec") or {}).get("nodeName"),
            containers=containers,
        )

    def _degraded(self, source: str, note: str) -> None:
        """Say once, in an Event, that a source is missing: silence must not read as health."""
        note = redact(note, self._secrets)
        if self.notes.get(source) == note:
            return
        first = source not in self.notes
        self.notes[source] = note
        logger.warning(note)
        if first and self.kube is not None and (experiment := self._experiment_obj()):
            self.kube.post_event(experiment, "WatchdogDegraded", note, "Warning")

    # ---- reporting -------------------------------------------------------------------------

    def _report(self, finding: Finding, now: float, pod: PodState | None) -> None:
        moment = datetime.fromtimestamp(now, UTC)
        experiment = self._experiment_obj() or {
            "metadata": {"name": self.config.experiment, "namespace": self.config.namespace}
        }
        bundle_uri = None
        if self.bundle_prefix:
            bundle_uri = f"{self.bundle_prefix}/{bundle_directory(finding, moment)}/"
            # Every key is <prefix>/<directory>/<file>: nothing a finding carries can move it.
            if bundle_location(bundle_uri).prefix != self.bundle_prefix:
                raise LayoutError(f"{bundle_uri} is not under {self.bundle_prefix}")
            bundle = build_bundle(
                uri=bundle_uri,
                finding=finding,
                now=moment,
                experiment=experiment,
                pyramid=self._get(API_VERSION, "ValidationPyramid", self.config.experiment),
                trainer=self.window.trainer,
                gpus=self.window.gpus,
                latest_gpus=self.window.latest_gpus(),
                checkpoints=self._checkpoints(),
                pod=pod,
                log_tail=self._log_tail(),
                notes=list(self.notes.values()),
            )
            files = {
                name: redact(data.decode(), self._secrets).encode()
                if name != "metrics.png"
                else data
                for name, data in bundle_files(bundle).items()
            }
            self.spool.add(bundle_uri.rstrip("/"), files)
        self.reported.add(finding.key)
        self.spool.remember(finding.key)
        logger.warning(
            "%s: %s%s",
            finding.kind.value,
            redact(finding.message, self._secrets),
            f" ({bundle_uri})" if bundle_uri else "",
        )
        if self.kube is not None and "uid" in experiment.get("metadata", {}):
            anomaly = Anomaly(
                kind=finding.kind,
                severity=finding.severity,
                time=moment,
                step=finding.step,
                message=redact(
                    finding.message + (f" (bundle {bundle_uri})" if bundle_uri else ""),
                    self._secrets,
                )[:4096],
                bundle_uri=bundle_uri,
            )
            digest = hashlib.sha256(finding.key.encode()).hexdigest()[:12]
            name = f"{self.config.experiment}.{finding.kind.value.lower()}.{digest}"
            # Kept until posted: the Event is how the operator learns of the incident (and stops
            # the run when asked); its fixed name makes a repeated post harmless.
            self._pending_events.append(anomaly_event(experiment, anomaly, name))

    def _post_pending_events(self) -> None:
        if self.kube is None:
            return
        while self._pending_events:
            try:
                self.kube.create(self._pending_events[0])
            except Exception as exc:
                logger.warning("could not post the anomaly Event (will retry): %s", exc)
                return
            self._pending_events.pop(0)

    def _checkpoints(self) -> list[tuple[int, str]]:
        """Complete checkpoints in the store (those with their COMPLETE marker), as the trainer
        would resume from them; what the trainer's log said when the store cannot be listed."""
        logged = list(self.tail.checkpoints) if self.tail else []
        if not self.config.checkpoint_uri:
            return logged
        try:
            store = self._open_store(self.config.checkpoint_uri)
            keys = store.list("step-")
        except Exception as exc:
            self._degraded("checkpoints", f"checkpoint store not listable ({exc})")
            return logged
        base = self.config.checkpoint_uri.rstrip("/")
        complete = sorted(
            {
                int(k.split("/")[0].removeprefix("step-"))
                for k in keys
                if k.endswith("/COMPLETE") and k.split("/")[0].removeprefix("step-").isdigit()
            }
        )
        return [(step, f"{base}/{checkpoint_directory(step)}/") for step in complete]

    def _experiment_obj(self) -> dict[str, Any] | None:
        if self._experiment is None:
            self._experiment = self._get(API_VERSION, "Experiment", self.config.experiment)
        return self._experiment

    def _get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        if self.kube is None:
            return None
        try:
            obj: dict[str, Any] | None = self.kube.get(
                api_version, kind, self.config.namespace, name
            )
            return obj
        except Exception as exc:
            self._degraded("kubernetes", f"cannot read {kind} {name} ({exc})")
            return None

    def _log_tail(self) -> list[str]:
        if self.kube is not None and self.config.pod:
            try:
                text: str = self.kube.log(self.config.namespace, self.config.pod, TRAINER_CONTAINER)
                return text.splitlines()[-200:]
            except Exception as exc:
                self._degraded("logs", f"trainer logs unavailable ({exc})")
        return list(self.tail.lines)[-50:] if self.tail else []

    # ---- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Check on the adaptive schedule until stopped (SIGTERM when the trainer has exited:
        the Job ends a native sidecar that way), then check once more and flush the spool."""
        budget = (
            float(duration_seconds(self.config.budget.max_duration))
            if self.config.budget and self.config.budget.max_duration
            else None
        )
        max_steps = self.config.budget.max_steps if self.config.budget else None
        while not stop.is_set():
            try:
                self.check()
            except Exception:  # a bad read must not end the watch over a days-long run
                logger.exception("check failed; trying again at the next one")
            elapsed = self.clock() - self.started
            done = [elapsed / budget] if budget else []
            step = next((s.step for s in reversed(self.window.trainer) if s.step), None)
            if max_steps and step:
                done.append(step / max_steps)
            interval = next_interval(
                elapsed, max(done) if done else None, self.config.spec.schedule
            )
            stop.wait(interval)
        try:
            self.check()
        finally:
            self.drain()

    def drain(self, grace_seconds: float = 20.0) -> None:
        """On the way out (the pod is ending, and its spool with it): post pending Events and
        upload what waits, retrying within the pod's termination grace period, backoff or not."""
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            self._post_pending_events()
            self.spool.flush(force=True)
            if not self.spool.waiting() and not self._pending_events:
                return
            time.sleep(1.0)
        logger.error(
            "leaving with %d bundles not uploaded (storage unreachable): %s",
            len(self.spool.waiting()),
            ", ".join(self.spool.waiting()),
        )


def run_until_signalled(watchdog: Watchdog) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    watchdog.run(stop)
    return 0
