"""A small Kubernetes client: plain dicts in and out, errors by meaning. Shared by the operator
(which writes) and the watchdog (which only reads and posts Events).

Built on the official client's ApiClient (which handles kubeconfig, in-cluster config, TLS and
auth plugins); the pure reconcilers and detectors never see it.

Answers that say "try again" are retried here, a few times, before a caller sees a KubeError:
- 429 TooManyRequests (API Priority and Fairness): the client sends nothing at all until its
  `Retry-After` has passed (the server is overloaded, not just this request's object), then
  retries; any request, since a 429 means the server did not act on it;
- 500, 502, 503, 504 and lost connections: retried after a jittered exponential backoff, for
  requests that are safe to repeat (everything but a create, which may have been carried out
  before the answer was lost; the caller's next reconcile finds out).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3 import Retry
from urllib3.exceptions import HTTPError

logger = logging.getLogger(__name__)
PLURALS = {
    "Job": "jobs",
    "Pod": "pods",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Secret": "secrets",
    "Event": "events",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Experiment": "experiments",
    "ValidationPyramid": "validationpyramids",
    "ConfigMap": "configmaps",
}

RETRIES = 4
"""Retries of a request the server asked to repeat (429) or that failed in passing (5xx, a lost
connection), after the first attempt."""
BACKOFF_SECONDS = 0.5
"""The first retry's delay after a 5xx or a lost connection; doubled each time, with jitter."""
MAX_RETRY_AFTER_SECONDS = 60.0
"""The longest Retry-After honoured as given (a larger one is capped, not ignored)."""
_TRANSIENT = (500, 502, 503, 504)


class KubeError(Exception):
    """A request failed for a reason that may pass (server busy, connection lost): retry later."""


class NotFoundError(KubeError):
    pass


class ForbiddenError(KubeError):
    """403: the operator lacks a permission, or a quota or a terminating namespace refuses; not
    the user's fault, and it may pass, so it is retried."""


class RejectedError(KubeError):
    """The API server refused the object (400/422): retrying the same request cannot help.
    `causes` holds the Status' field-level causes ({"field": ..., "message": ...}) when it
    gave any, so a caller can name the field at fault."""

    def __init__(self, message: str, causes: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.causes = causes or []


class AlreadyExistsError(KubeError):
    """409 on create: an object of that name exists already."""


class KubeClient:
    def __init__(self, api: client.ApiClient, component: str = "proctor-operator") -> None:
        self.api = api
        self.component = component  # who reports the Events this client posts
        # Named in audit logs and API server metrics by what it is, not by the client library.
        self.api.user_agent = f"{component}/{_version()}"
        # After a 429, nothing is sent before this time.monotonic() (see the module docstring).
        self._not_before = 0.0
        self._throttle = threading.Lock()
        # urllib3's default retries would repeat a 429 (or a 503 with Retry-After) in place, out
        # of this client's sight, while its other threads go on sending: answers come to _raw,
        # which retries them; urllib3 still retries failed connections.
        pools = self.api.rest_client.pool_manager
        pools.connection_pool_kw["retries"] = Retry(3, respect_retry_after_header=False)
        pools.clear()

    @classmethod
    def from_environment(cls, component: str = "proctor-operator") -> KubeClient:
        """In-cluster credentials in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(client.ApiClient(), component)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", _path(api_version, kind, namespace, name))
        except NotFoundError:
            return None

    def select(
        self, api_version: str, kind: str, namespace: str, selector: dict[str, str | None]
    ) -> list[dict[str, Any]]:
        """Objects whose labels match `selector` (a None value: the label exists)."""
        text = ",".join(k if v is None else f"{k}={v}" for k, v in selector.items())
        body = self._call(
            "GET", _path(api_version, kind, namespace), query=[("labelSelector", text)]
        )
        items: list[dict[str, Any]] = body.get("items") or []
        for item in items:  # list items carry no apiVersion/kind; owners need them
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def list_objects(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        """Every object of `kind` in `namespace`."""
        return self.select(api_version, kind, namespace, {})

    def create_new(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create `obj` and return it as stored (name, uid, defaults filled); AlreadyExistsError
        when one of its name exists, for callers to whom that is news, not success."""
        meta = obj["metadata"]
        try:
            return self._call("POST", _path(obj["apiVersion"], obj["kind"], meta["namespace"]), obj)
        except _ConflictError as exc:
            raise AlreadyExistsError(str(exc)) from None

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """A plain JSON merge patch (RFC 7386) of the object; returns it as stored."""
        path = _path(api_version, kind, namespace, name)
        return self._call("PATCH", path, patch, content_type="application/merge-patch+json")

    def log(self, namespace: str, pod: str, container: str, tail_lines: int = 200) -> str:
        """The container's last lines (pods/log)."""
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        query = [("container", container), ("tailLines", str(tail_lines))]
        return self._raw("GET", path, query=query).decode(errors="replace")

    def create(self, obj: dict[str, Any]) -> bool:
        """Create `obj`; False when one of its name exists already (fixed names make a second
        create harmless)."""
        meta = obj["metadata"]
        try:
            self._call("POST", _path(obj["apiVersion"], obj["kind"], meta["namespace"]), obj)
        except _ConflictError:
            return False
        return True

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete with background propagation (dependents, such as a Job's pods, go too)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        with contextlib.suppress(NotFoundError):
            self._call("DELETE", _path(api_version, kind, namespace, name), body)

    def patch_status(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Write `status` through the status subresource: a merge patch carrying every field the
        reconciler computed (fields it drops are not removed), guarded by resourceVersion so a
        write based on a stale read is refused (409) and redone, not applied."""
        meta = obj["metadata"]
        path = _path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]) + "/status"
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        return self._call("PATCH", path, patch, content_type="application/merge-patch+json")

    def post_event(
        self, obj: dict[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> None:
        """An Event about `obj`, best effort: a lost Event must never stop a reconcile."""
        meta = obj["metadata"]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._call("POST", _path("v1", "Event", meta["namespace"]), body)
        except KubeError as exc:
            logger.warning("could not post event %s on %s: %s", reason, meta["name"], exc)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        data = self._raw(method, path, body, query, content_type)
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def _raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        for attempt in range(RETRIES + 1):
            self._wait_turn()
            try:
                response = self.api.call_api(
                    path,
                    method,
                    query_params=query or [],
                    header_params={
                        "Accept": "application/json, */*",
                        "Content-Type": content_type,
                    },
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=30,
                )
            except ApiException as exc:
                if attempt == RETRIES or not self._retryable(exc.status, method, exc):
                    raise _error(exc, method, path) from None
                logger.debug("%s %s: %s; retrying", method, path, exc.status)
            except (HTTPError, OSError) as exc:
                if attempt == RETRIES or method == "POST":
                    raise KubeError(f"{method} {path}: {exc}") from None
                logger.debug("%s %s: %s; retrying", method, path, exc)
            else:
                data: bytes = response[0].data if isinstance(response, tuple) else response.data
                return data
            time.sleep(BACKOFF_SECONDS * 2**attempt * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _retryable(self, status: int | None, method: str, exc: ApiException) -> bool:
        """Whether to repeat a request that got `status`; a 429 also holds back this client."""
        if status == 429:
            wait = min(_retry_after(exc), MAX_RETRY_AFTER_SECONDS)
            with self._throttle:
                self._not_before = max(self._not_before, time.monotonic() + wait)
            return True
        return status in _TRANSIENT and method != "POST"

    def _wait_turn(self) -> None:
        """Sleep until a Retry-After the server gave this client has passed."""
        while (wait := self._not_before - time.monotonic()) > 0:
            time.sleep(wait)


class _ConflictError(KubeError):
    pass


def _error(exc: ApiException, method: str, path: str) -> KubeError:
    message = exc.reason or ""
    causes: list[dict[str, str]] = []
    with contextlib.suppress(ValueError, AttributeError):
        status = json.loads(exc.body or "{}")
        message = status.get("message", message)
        causes = [
            {"field": str(c.get("field", "")), "message": str(c.get("message", ""))}
            for c in (status.get("details") or {}).get("causes") or []
        ]
    text = f"{method} {path}: {exc.status} {message}"
    if exc.status == 404:
        return NotFoundError(text)
    if exc.status == 409 and method == "POST":
        return _ConflictError(text)
    if exc.status == 403:
        return ForbiddenError(text)
    if exc.status in (400, 422):
        return RejectedError(message, causes)
    return KubeError(text)


def _retry_after(exc: ApiException) -> float:
    """Seconds a 429 asks to wait: its Retry-After header, else the Status' retryAfterSeconds,
    else 1, as client-go reads it."""
    headers = exc.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            value = (json.loads(exc.body or "{}").get("details") or {}).get("retryAfterSeconds")
    try:
        return max(float(value), 0.0) if value is not None else 1.0
    except ValueError:
        return 1.0


def _path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


def _version() -> str:
    try:
        return importlib.metadata.version("proctor")
    except importlib.metadata.PackageNotFoundError:
        return "dev"
