"""The pod runner: the emulated cluster's kubelet and Job controller.

Images are not run. Each container's `command` + `args` runs as a local process in the current
Python environment (its bin directory leads PATH, so `python -m ...` and `proctor ...` find this
checkout's packages: every image is this environment), with:
- the pod's env: literal values, `$(VAR)` references, `fieldRef` (name, namespace, uid, labels,
  annotations, pod IP), Secret and ConfigMap keys, `envFrom`; plus HOSTNAME and KUBECONFIG;
- a working directory per pod (`<workdir>/<namespace>/<pod>/`), where each volume is a directory:
  emptyDir starts empty, Secret and ConfigMap volumes hold their keys as files;
- path mapping: a container's paths under a volume's `mountPath` and its `terminationMessagePath`,
  written in its command, args or env values, are rewritten to those local directories, since
  there are no mount namespaces;
- host mapping: every pod shares this host, so names under the pod's subdomain
  (`<job>-0.<service>[.<ns>[.svc[.cluster.local]]]`, what torchrun rendezvous uses) are rewritten
  to 127.0.0.1;
- port mapping (proctor.cluster.podnet): each pod has an IP of its own (127.1.x.y) and each port
  it declares (`ports[].containerPort`) a host port of its own, so two pods that declare one
  port do not collide; ports a pod does not declare are shared;
- init containers in order, native sidecars (init containers with `restartPolicy: Always`) kept
  running beside the main containers (restarted when they exit meanwhile, restartCount counted,
  without the kubelet's back-off delay) and stopped (SIGTERM, then SIGKILL) once those exit;
- exit codes to container states and pod phases; the termination message read from the
  terminationMessagePath file (or the log tail with FallbackToLogsOnError), 4096 bytes at most;
- logs kept per container and served as `pods/log`;
- one node, `proctor-local`, with the extended resources (GPUs) given to the runner, none by
  default: a pod asking for more stays Pending with PodScheduled=False, reason Unschedulable, as
  the scheduler reports it. CPU and memory are not checked (every pod shares this machine).

What the kubelet decides on a real node (the OOM killer, an eviction under memory pressure) has no
cause here, so a test asks for it with an annotation on a running pod (`END_AS_ANNOTATION`):
- `OOMKilled`: the main containers' processes get SIGKILL and end as the OOM killer leaves them
  (exit code 137, reason OOMKilled); the pod fails.
- `Evicted`: every process gets SIGKILL; the pod fails with reason Evicted, the kubelet's message
  and the DisruptionTarget condition (reason TerminationByKubelet), as a kubelet evicting it
  under memory pressure reports it.
A pod annotated before its main containers start meets its end once they have.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proctor.cluster import errors
from proctor.cluster.jobs import reconcile_job
from proctor.cluster.meta import now_rfc3339
from proctor.cluster.podnet import PodAddress, PodNetwork
from proctor.cluster.store import Store, WatchEvent

MAX_TERMINATION_MESSAGE = 4096
END_AS_ANNOTATION = "emulator.proctor.dev/end-as"
"""Set on a running pod to end it as the kubelet would: `OOMKilled` or `Evicted` (see above)."""
END_AS = ("OOMKilled", "Evicted")
EVICTION_MESSAGE = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. "
    "(emulated: annotation " + END_AS_ANNOTATION + ")"
)
logger = logging.getLogger(__name__)
_FALLBACK_LOG_LINES = 80
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class ContainerConfigError(Exception):
    """The pod cannot start: a referenced Secret/ConfigMap key is missing, no command given..."""


class PodRunner:
    """Runs every Job's pods of a Store as local processes, while used as `async with`."""

    def __init__(
        self,
        store: Store,
        workdir: Path,
        *,
        kubeconfig: Path | None = None,
        grace_seconds: float = 5.0,
        tick_seconds: float = 0.5,
        extended_resources: dict[str, int] | None = None,
    ) -> None:
        """`extended_resources`: the node's allocatable GPUs and the like, e.g.
        {"nvidia.com/gpu": 1}; pods asking for more are never started."""
        self.store = store
        self.extended_resources = dict(extended_resources or {})
        self._unschedulable: set[str] = set()  # pod uids already reported Unschedulable
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.grace_seconds = grace_seconds
        self.tick_seconds = tick_seconds
        self._wakeup = asyncio.Event()
        # Keyed by pod uid: a pod deleted and created again under its name is a new pod.
        self._pods: dict[str, asyncio.Task[None]] = {}
        self._finished: set[tuple[str, str]] = set()  # (pod uid, container) that have exited
        # Each running pod's processes by container name (main containers and sidecars), and the
        # end a test asked for (END_AS_ANNOTATION), once carried out.
        self._running: dict[str, dict[str, asyncio.subprocess.Process]] = {}
        self._mains: dict[str, set[str]] = {}
        self._ended_as: dict[str, str] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._pods_type = store.type("", "v1", "pods")
        self.network = PodNetwork()
        self._jobs_type = store.type("batch", "v1", "jobs")

    # ---- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> PodRunner:
        self.store.add_listener(self._on_event)
        self._loop_task = asyncio.create_task(self._loop(), name="proctor-pod-runner")
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the loop, then every pod's processes (each pod task stops its own)."""
        self.store.remove_listener(self._on_event)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._pods.values()):
            task.cancel()
        await asyncio.gather(*self._pods.values(), return_exceptions=True)

    def log_source(self, namespace: str, pod: str, container: str | None) -> tuple[str, bool]:
        """What `pods/log` serves: the container's output so far, and whether it has exited."""
        if container is None:
            raise errors.bad_request(f"a container name must be given for pod {pod}")
        uid = self.store.get(self._pods_type, namespace, pod)["metadata"]["uid"]
        path = self._pod_dir(namespace, pod) / "logs" / f"{container}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        running = uid in self._pods and not self._pods[uid].done()
        return text, (uid, container) in self._finished or not running

    def _on_event(self, event: WatchEvent) -> None:
        if event.key in (("batch", "jobs"), ("", "pods")):
            self._wakeup.set()

    async def _loop(self) -> None:
        while True:
            try:
                self._reconcile()
            except Exception:  # never let one bad object stop every pod of the cluster
                logger.exception("pod runner: reconciling failed; retrying on the next change")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.tick_seconds)
            self._wakeup.clear()

    # ---- the Job controller and the pod lifecycle -------------------------------------------

    def _reconcile(self) -> None:
        now = datetime.now(UTC)
        # Read-only views: this pass reads every Job and pod, on every change of any of them.
        pods = self.store.list(self._pods_type, "", shared=True)
        by_owner: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences") or []:
                by_owner.setdefault(ref.get("uid", ""), []).append(pod)
        for job in self.store.list(self._jobs_type, "", shared=True):
            try:
                self._reconcile_job(job, by_owner.get(job["metadata"]["uid"], []), now)
            except Exception as exc:  # a malformed Job fails alone, with a reason
                logger.exception(
                    "pod runner: job %s/%s", job["metadata"]["namespace"], job["metadata"]["name"]
                )
                self._fail_job(job, f"the emulated Job controller cannot run this Job: {exc!r}")
        live = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            live.add(uid)
            end_as = (pod["metadata"].get("annotations") or {}).get(END_AS_ANNOTATION)
            if end_as and uid in self._pods and uid not in self._ended_as:
                self._end_as(pod, end_as)
            if (
                uid not in self._pods
                and pod.get("status", {}).get("phase") == "Pending"
                and not pod["metadata"].get("deletionTimestamp")
            ):
                if (shortage := self._shortage(pod)) is not None:
                    self._report_unschedulable(pod, shortage)
                    continue
                key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
                run = self._run_pod(copy.deepcopy(pod))  # it outlives this pass: its own copy
                self._pods[uid] = asyncio.create_task(run, name=f"pod {key}")
        self._unschedulable &= live
        for uid, task in list(self._pods.items()):
            if uid not in live:
                if not task.done():
                    task.cancel()  # the pod was deleted: its task stops its processes
                else:
                    del self._pods[uid]
                    self._finished = {f for f in self._finished if f[0] != uid}
                    self._ended_as.pop(uid, None)

    def _end_as(self, pod: dict[str, Any], end_as: str) -> None:
        """Carry out END_AS_ANNOTATION on a running pod: SIGKILL what the kubelet would kill;
        the pod's task reports the end (see _run_pod). Waits for the main containers to run."""
        uid, name = pod["metadata"]["uid"], pod["metadata"]["name"]
        if end_as not in END_AS:
            logger.warning(
                "pod runner: pod %s: %s=%r is not one of %s; ignored",
                name,
                END_AS_ANNOTATION,
                end_as,
                END_AS,
            )
            self._ended_as[uid] = ""
            return
        running, mains = self._running.get(uid, {}), self._mains.get(uid, set())
        if not mains or not mains <= set(running):
            return  # not started yet: tried again on the next pass
        self._ended_as[uid] = end_as
        doomed = mains if end_as == "OOMKilled" else set(running)
        for container in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running[container].pid, signal.SIGKILL)

    def _reconcile_job(
        self, job: dict[str, Any], owned: list[dict[str, Any]], now: datetime
    ) -> None:
        decision = reconcile_job(job, owned, now)
        ns = job["metadata"]["namespace"]
        for name in decision.delete:
            with contextlib.suppress(errors.ApiError):
                self.store.delete(self._pods_type, ns, name, propagation="background")
        for pod in decision.create:
            self.store.create(self._pods_type, ns, pod)
        if decision.status != (job.get("status") or {}):
            with contextlib.suppress(errors.ApiError):
                self.store.update(
                    self._jobs_type,
                    ns,
                    job["metadata"]["name"],
                    {**job, "status": decision.status},
                    subresource="status",
                )

    def _shortage(self, pod: dict[str, Any]) -> str | None:
        """The extended resources `pod` asks for beyond the node's, as the scheduler says it."""
        wanted: dict[str, float] = {}
        spec = pod.get("spec", {})
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            resources = container.get("resources") or {}
            amounts = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
            for name, amount in amounts.items():
                if "/" in name and not name.startswith(("hugepages-", "kubernetes.io/")):
                    wanted[name] = wanted.get(name, 0) + float(amount)
        short = [n for n, amount in wanted.items() if amount > self.extended_resources.get(n, 0)]
        if not short:
            return None
        return "0/1 nodes are available: " + ", ".join(f"1 Insufficient {n}" for n in short) + "."

    def _report_unschedulable(self, pod: dict[str, Any], message: str) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._unschedulable:
            return
        self._unschedulable.add(uid)
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": now_rfc3339(),
        }
        self._set_status(
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            {"phase": "Pending", "conditions": [condition]},
        )

    def _fail_job(self, job: dict[str, Any], message: str) -> None:
        stamp = now_rfc3339()
        failed = {
            "type": "Failed",
            "status": "True",
            "reason": "InvalidJob",
            "message": message,
            "lastProbeTime": stamp,
            "lastTransitionTime": stamp,
        }
        status = {**(job.get("status") or {}), "conditions": [failed]}
        with contextlib.suppress(errors.ApiError):
            self.store.update(
                self._jobs_type,
                job["metadata"]["namespace"],
                job["metadata"]["name"],
                {**job, "status": status},
                subresource="status",
            )

    async def _run_pod(self, pod: dict[str, Any]) -> None:
        ns, name, uid = (
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            pod["metadata"]["uid"],
        )
        spec = pod.get("spec", {})
        pod_dir = self._pod_dir(ns, name)
        shutil.rmtree(pod_dir, ignore_errors=True)  # an earlier pod of the same name left it
        (pod_dir / "logs").mkdir(parents=True, exist_ok=True)
        # Every process this pod started, so each one is stopped however the pod ends.
        processes: list[asyncio.subprocess.Process] = []
        sidecars: list[tuple[str, asyncio.subprocess.Process]] = []
        supervisors: list[asyncio.Task[None]] = []
        running = self._running[uid] = {}
        self._mains[uid] = {c["name"] for c in spec.get("containers") or []}
        address = await self.network.attach(pod)
        status: dict[str, Any] = {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "podIP": address.ip,
            "startTime": now_rfc3339(),
            "conditions": [_cond("PodScheduled")],
            "initContainerStatuses": [],
            "containerStatuses": [],
        }

        async def start(container: dict[str, Any]) -> asyncio.subprocess.Process:
            process = await self._start(pod, container, volumes, pod_dir, address)
            processes.append(process)
            running[container["name"]] = process
            return process

        async def supervise(container: dict[str, Any], index: int) -> None:
            """Restart the sidecar `sidecars[index]` whenever it exits before the pod ends."""
            restarts = 0
            while True:
                code = _exit_code(await sidecars[index][1].wait())
                if self._ended_as.get(uid) == "Evicted":
                    return  # an evicted pod's containers are not restarted
                restarts += 1
                entry = _running(container, started=True)
                entry["restartCount"] = restarts
                entry["lastState"] = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "finishedAt": now_rfc3339(),
                    }
                }
                sidecars[index] = (container["name"], await start(container))
                status["initContainerStatuses"] = [
                    entry if e["name"] == container["name"] else e
                    for e in status["initContainerStatuses"]
                ]
                self._set_status(ns, name, status)

        try:
            volumes = self._prepare_volumes(pod, pod_dir)
            self._set_status(ns, name, status)
            for container in spec.get("initContainers") or []:
                if container.get("restartPolicy") == "Always":
                    sidecars.append((container["name"], await start(container)))
                    status["initContainerStatuses"].append(_running(container, started=True))
                    self._set_status(ns, name, status)
                    supervisors.append(asyncio.create_task(supervise(container, len(sidecars) - 1)))
                    continue
                code = _exit_code(await (await start(container)).wait())
                status["initContainerStatuses"].append(
                    self._terminated(pod, container, code, volumes)
                )
                if code != 0:
                    status.update(
                        phase="Failed",
                        reason="Init:Error",
                        message=f"init container {container['name']} exited with {code}",
                    )
                    return
            status["conditions"].append(_cond("Initialized"))
            mains = [(c, await start(c)) for c in spec.get("containers") or []]
            status.update(phase="Running", containerStatuses=[_running(c) for c, _ in mains])
            status["conditions"] += [_cond("ContainersReady"), _cond("Ready")]
            self._set_status(ns, name, status)
            codes = [_exit_code(c) for c in await asyncio.gather(*(p.wait() for _, p in mains))]
            for task in supervisors:  # the main containers are done: sidecars stop for good
                task.cancel()
            status["containerStatuses"] = [
                self._terminated(pod, c, code, volumes)
                for (c, _), code in zip(mains, codes, strict=True)
            ]
            status["phase"] = "Succeeded" if all(code == 0 for code in codes) else "Failed"
            status["conditions"] = [
                c for c in status["conditions"] if c["type"] not in ("Ready", "ContainersReady")
            ]
            _report_end_as(self._ended_as.get(uid), status)
        except ContainerConfigError as exc:
            status.update(phase="Failed", reason="CreateContainerConfigError", message=str(exc))
        except Exception as exc:  # a pod this runner cannot read fails, with the reason
            logger.exception("pod runner: pod %s/%s", ns, name)
            status.update(
                phase="Failed", reason="RunnerError", message=f"the pod runner failed: {exc!r}"
            )
        finally:
            # Shielded: a cancelled pod (deleted, suspended, past its deadline, cluster stopping)
            # still stops every process it started, sidecars with SIGTERM first.
            # One shielded task: a second cancel while waiting on it ends only the wait; the
            # release goes on, the bookkeeping below still runs, and the cancel is raised last.
            cancelled_again = False
            for task in supervisors:
                task.cancel()
            try:
                await asyncio.gather(*supervisors, return_exceptions=True)
            except asyncio.CancelledError:
                cancelled_again = True
            release = asyncio.ensure_future(self._release(processes, address))
            try:
                await asyncio.shield(release)
            except asyncio.CancelledError:
                cancelled_again = True
            self._running.pop(uid, None)
            self._mains.pop(uid, None)
            for sidecar_name, process in sidecars:
                for entry in status["initContainerStatuses"]:
                    if entry["name"] == sidecar_name:
                        restarts = entry.get("restartCount", 0)
                        entry.update(
                            self._terminated(
                                pod, {"name": sidecar_name}, _exit_code(process.returncode or 0), {}
                            ),
                            restartCount=restarts,
                        )
            for process_container in spec.get("containers") or []:
                self._finished.add((uid, process_container["name"]))
            if status["phase"] in ("Succeeded", "Failed"):
                self._set_status(ns, name, status)
            if cancelled_again:
                raise asyncio.CancelledError

    def _set_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(errors.ApiError):  # deleted meanwhile
            current = self.store.get(self._pods_type, ns, name)
            self.store.update(
                self._pods_type, ns, name, {**current, "status": status}, subresource="status"
            )

    def _terminated(
        self,
        pod_obj: dict[str, Any],
        container: dict[str, Any],
        code: int,
        volumes: dict[str, Path],
    ) -> dict[str, Any]:
        ns, pod = pod_obj["metadata"]["namespace"], pod_obj["metadata"]["name"]
        self._finished.add((pod_obj["metadata"]["uid"], container["name"]))
        message = ""
        path = container.get("terminationMessagePath", "/dev/termination-log")
        local = _map_path(path, volumes) if volumes else path
        local_file = self._pod_dir(ns, pod) / "termination" / container["name"]
        for candidate in (Path(local), local_file):
            if candidate.is_file() and candidate.is_relative_to(self._pod_dir(ns, pod)):
                message = candidate.read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")
                break
        if (
            not message
            and code != 0
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            log = self._pod_dir(ns, pod) / "logs" / f"{container['name']}.log"
            lines = (
                log.read_text(errors="replace").splitlines()[-_FALLBACK_LOG_LINES:]
                if log.exists()
                else []
            )
            message = "\n".join(lines)[-MAX_TERMINATION_MESSAGE:]
        reason = "Completed" if code == 0 else "Error"
        terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": now_rfc3339(),
            "finishedAt": now_rfc3339(),
        }
        if message:
            terminated["message"] = message
        return {
            "name": container["name"],
            "ready": False,
            "restartCount": 0,
            "started": False,
            "image": container.get("image", ""),
            "imageID": "",
            "state": {"terminated": terminated},
        }

    # ---- processes ---------------------------------------------------------------------------

    async def _start(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        volumes: dict[str, Path],
        pod_dir: Path,
        address: PodAddress,
    ) -> asyncio.subprocess.Process:
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not container.get("command"):
            raise ContainerConfigError(
                f"container {container['name']!r} has no command: the emulated cluster runs "
                "commands, not image entrypoints; give it `command` (and `args`)"
            )
        mounts = {
            m["mountPath"]: volumes[m["name"]]
            for m in container.get("volumeMounts") or []
            if m["name"] in volumes
        }
        termination_dir = pod_dir / "termination"
        termination_dir.mkdir(exist_ok=True)
        mounts[container.get("terminationMessagePath", "/dev/termination-log")] = (
            termination_dir / container["name"]
        )
        env, own = self._environment(pod, container, address.ip)
        rewrite_paths = _rewriter(mounts, pod, self._headless_service(pod))
        rewrite_ports = address.rewriter()

        def rewrite(value: str) -> str:
            return rewrite_ports(rewrite_paths(value))

        # Only the pod's own variables: what this host and the runner set (PATH, KUBECONFIG) are
        # this host's paths, which a mount such as /tmp must not redirect into the pod.
        env = {k: rewrite(v) if k in own else v for k, v in env.items()}
        argv = [rewrite(_expand(a, env)) for a in argv]
        log = open(pod_dir / "logs" / f"{container['name']}.log", "ab")  # noqa: SIM115 (owned by the process)
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                cwd=pod_dir,
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise ContainerConfigError(
                f"container {container['name']!r} cannot start {argv[0]!r}: {exc}"
            ) from None
        finally:
            log.close()

    async def _release(
        self, processes: list[asyncio.subprocess.Process], address: PodAddress
    ) -> None:
        """Stop every process of a pod, then give its IP and ports back, whatever happens."""
        try:
            await asyncio.gather(*(self._stop(p) for p in processes))
        finally:
            await self.network.detach(address)

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.grace_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    def _environment(
        self, pod: dict[str, Any], container: dict[str, Any], pod_ip: str
    ) -> tuple[dict[str, str], set[str]]:
        """The container's environment, and the names the pod itself sets (env, envFrom)."""
        meta = pod["metadata"]
        env = dict(os.environ)
        own: set[str] = set()
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["HOSTNAME"] = pod.get("spec", {}).get("hostname") or meta["name"]
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._object_data(
                    "configmaps", meta["namespace"], source["configMapRef"], None
                )
            else:
                data = self._object_data("secrets", meta["namespace"], source["secretRef"], None)
            env.update({prefix + k: v for k, v in (data or {}).items()})
            own.update(prefix + k for k in data or {})
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = _expand(var["value"], env)
                own.add(var["name"])
            elif "valueFrom" in var:
                value = self._value_from(pod, var["valueFrom"], pod_ip)
                if value is not None:
                    env[var["name"]] = value
                    own.add(var["name"])
        return env, own

    def _value_from(self, pod: dict[str, Any], source: dict[str, Any], pod_ip: str) -> str | None:
        meta = pod["metadata"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if match := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
                return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
            simple = {
                "metadata.name": meta["name"],
                "metadata.namespace": meta["namespace"],
                "metadata.uid": meta.get("uid", ""),
                "status.podIP": pod_ip,
                "status.hostIP": "127.0.0.1",
                "spec.nodeName": "proctor-local",
                "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", "default"),
            }
            if path not in simple:
                raise ContainerConfigError(
                    f"fieldRef {path!r} is not supported by the emulated cluster"
                )
            return str(simple[path])
        for plural, ref_key in (("secrets", "secretKeyRef"), ("configmaps", "configMapKeyRef")):
            if ref_key in source:
                ref = source[ref_key]
                value = self._object_data(plural, meta["namespace"], ref, ref["key"])
                return None if value is None else str(value)
        return None

    def _object_data(self, plural: str, ns: str, ref: dict[str, Any], key: str | None) -> Any:
        rt = self.store.type("", "v1", plural)
        try:
            obj = self.store.get(rt, ns, ref["name"])
        except errors.ApiError:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f'{rt.kind.lower()} "{ref["name"]}" not found') from None
        data = dict(obj.get("data") or {})
        if plural == "secrets":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        if key is None:
            return data
        if key not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"couldn't find key {key} in {rt.kind} {ns}/{ref['name']}")
        return data[key]

    def _prepare_volumes(self, pod: dict[str, Any], pod_dir: Path) -> dict[str, Path]:
        volumes = {}
        for volume in pod.get("spec", {}).get("volumes") or []:
            local = pod_dir / "volumes" / volume["name"]
            local.mkdir(parents=True, exist_ok=True)
            for plural, field, name_key in (
                ("secrets", "secret", "secretName"),
                ("configmaps", "configMap", "name"),
            ):
                if field in volume:
                    ref = {
                        "name": volume[field][name_key],
                        "optional": volume[field].get("optional", False),
                    }
                    for k, v in (
                        self._object_data(plural, pod["metadata"]["namespace"], ref, None) or {}
                    ).items():
                        (local / k).write_text(v)
            volumes[volume["name"]] = local
        return volumes

    def _headless_service(self, pod: dict[str, Any]) -> str | None:
        """The pod's subdomain if a headless Service of that name exists (as DNS needs)."""
        subdomain = pod.get("spec", {}).get("subdomain")
        if not subdomain:
            return None
        try:
            service = self.store.get(
                self.store.type("", "v1", "services"), pod["metadata"]["namespace"], subdomain
            )
        except errors.ApiError:
            return None
        return str(subdomain) if service.get("spec", {}).get("clusterIP") == "None" else None

    def _pod_dir(self, namespace: str, pod: str) -> Path:
        return self.workdir / namespace / pod


def _exit_code(returncode: int) -> int:
    """A container runtime's exit code: 128 + the signal for a process a signal ended (143 for
    SIGTERM, 137 for SIGKILL), where Python reports the negative signal number."""
    return 128 - returncode if returncode < 0 else returncode


def _report_end_as(end_as: str | None, status: dict[str, Any]) -> None:
    """Report a pod ended by END_AS_ANNOTATION as the kubelet reports that end."""
    if end_as == "OOMKilled":
        for entry in status["containerStatuses"]:
            terminated = entry["state"]["terminated"]
            if terminated["exitCode"] == 137:
                terminated["reason"] = "OOMKilled"
    elif end_as == "Evicted":
        status.update(phase="Failed", reason="Evicted", message=EVICTION_MESSAGE)
        status["conditions"].append(
            {
                **_cond("DisruptionTarget"),
                "reason": "TerminationByKubelet",
                "message": "The node was low on resource: memory.",
            }
        )


def _cond(kind: str) -> dict[str, Any]:
    return {"type": kind, "status": "True", "lastTransitionTime": now_rfc3339()}


def _running(container: dict[str, Any], started: bool = True) -> dict[str, Any]:
    return {
        "name": container["name"],
        "ready": True,
        "restartCount": 0,
        "started": started,
        "image": container.get("image", ""),
        "imageID": "",
        "state": {"running": {"startedAt": now_rfc3339()}},
    }


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known variables are replaced, unknown ones kept."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _map_path(path: str, mounts: dict[str, Path]) -> str:
    for mount in sorted(mounts, key=len, reverse=True):
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return str(mounts[mount]) + path[len(mount.rstrip("/")) :]
    return path


def _rewriter(
    mounts: dict[str, Path], pod: dict[str, Any], subdomain: str | None
) -> Callable[[str], str]:
    """Rewrites mount paths to local directories and, when `subdomain` names a headless Service
    that exists, pod names under it to 127.0.0.1."""
    ns = pod["metadata"]["namespace"]
    host = (
        re.compile(
            rf"\b[a-z0-9]([-a-z0-9]*[a-z0-9])?\.{re.escape(subdomain)}"
            rf"(\.{re.escape(ns)}(\.svc(\.cluster\.local)?)?)?\b"
        )
        if subdomain
        else None
    )
    # A mount path counts where a path can start: at the beginning, after whitespace, `=`, `:`,
    # a quote or a redirection, and only up to a path boundary (so /data does not match /database).
    # One pass over every mount, longest first: a path already mapped is never mapped again (the
    # local directory of /var/spool lies under this host's /tmp, which a pod may mount too).
    locals_by_mount = {m.rstrip("/"): str(local) for m, local in mounts.items() if m.rstrip("/")}
    ordered = sorted(locals_by_mount, key=len, reverse=True)
    paths = (
        re.compile(r"(^|[\s=:'\"<>(])(" + "|".join(map(re.escape, ordered)) + r")(?=/|$|[\s'\";)])")
        if ordered
        else None
    )

    def rewrite(value: str) -> str:
        if paths is not None:
            value = paths.sub(lambda m: m.group(1) + locals_by_mount[m.group(2)], value)
        return host.sub("127.0.0.1", value) if host else value

    return rewrite
