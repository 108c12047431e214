"""The emulated Kubernetes API server: HTTP on top of kmock, semantics from `Store`.

kmock (the mock server by kopf's author) provides the HTTP server, request parsing and recording,
the discovery scaffold and the DSL for injecting reactions (faults, delays) ahead of the default
behaviour. kmock's own `KubernetesEmulator` keeps objects as plain merged dicts without
resourceVersions, selectors, subresources or validation, so the state layer here is our `Store`
and this class only translates HTTP to store calls and back: routing, content negotiation (JSON,
Table), watch streams with bookmarks and 410 Gone, `dryRun`, strict field validation, pod logs and
the OpenAPI v3 documents.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import parsing as kmock_parsing

from proctor.cluster import errors, openapi, protobuf, tables
from proctor.cluster.catalog import ResourceType
from proctor.cluster.faults import ApiFaults
from proctor.cluster.patches import APPLY_PATCH
from proctor.cluster.selectors import (
    SelectorError,
    field_selector,
    label_selector,
    required_labels,
)
from proctor.cluster.store import Store, WatchEvent, check_shape

logger = logging.getLogger(__name__)
SERVER_VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0-proctor-emulated",
    "platform": "linux/amd64",
    "goVersion": "n/a",
    "compiler": "n/a",
}
_STOP = object()
# (namespace, pod, container) -> (log text so far, whether the container has finished)
LogSource = Callable[[str, str, str | None], tuple[str, bool]]


@dataclass(frozen=True)
class Route:
    group: str
    version: str
    namespace: str
    plural: str
    name: str | None
    subresource: str | None


def parse_route(path: str) -> Route | None:
    """The resource a URL path names, or None for discovery and non-API paths."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    # /api/v1/namespaces/{ns}/{plural}... (but /api/v1/namespaces/{name}/status is the namespace)
    namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    return Route(
        group=group,
        version=version,
        namespace=namespace,
        plural=rest[0],
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def _client(request: aiohttp.web.BaseRequest) -> str:
    """The User-Agent's product name: `kubectl/v1.31.0 (linux/amd64)` -> `kubectl`."""
    agent = request.headers.get("User-Agent", "")
    return agent.split("/", 1)[0].split(" ", 1)[0] or "unknown"


def _verb(request: aiohttp.web.BaseRequest) -> str:
    """The Kubernetes verb of a request, as audit logs name it."""
    method = request.method
    if method == "GET":
        route = parse_route(request.path)
        if route is None or route.name is not None:
            return "get"
        return "watch" if request.query.get("watch") in ("1", "true") else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


@attrs.define(kw_only=True)
class EmulatedApiServer(kmock.KubernetesScaffold):
    """A Kubernetes API server good enough for kubectl, helm and kopf. Serve it with
    `kmock.Server(api)` inside `async with api:` (see `proctor.cluster.runtime`)."""

    store: Store = attrs.field(factory=Store)
    bookmark_interval: float = 5.0
    log_source: LogSource | None = None
    recorded_requests: int = 100
    watch_queue_limit: int = 10_000
    _watch_queues: set[asyncio.Queue[Any]] = attrs.field(factory=set, init=False)
    _builtin_reactions: int = attrs.field(default=0, init=False)
    request_counts: collections.Counter[tuple[str, str, str]] = attrs.field(
        factory=collections.Counter, init=False
    )
    """Requests served, by (client, verb, resource): the client is the User-Agent's product
    (`kopf`, `proctor-operator`, `kubectl`...), the verb get, list, watch, create, patch,
    delete..., the resource its plural (`discovery` for the rest). Benchmarks read it to count
    the requests an operator makes per object."""
    faults: ApiFaults | None = None
    """Injected faults (errors, slow answers, cut watches) for some clients' requests, ahead of
    everything else; None serves every request as usual (see proctor.cluster.faults)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._builtin_reactions = len(self._payloads)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # kmock keeps every request for assertions and matches each new one against all of them;
        # keep the last few so a long-lived cluster stays fast.
        del self._requests[: -self.recorded_requests]
        raw = request._raw_request
        if self.faults is not None and raw is not None:
            fault = await self.faults.disturb(raw, _client(raw), _verb(raw))
            if fault is not None:
                return fault
        if len(self._payloads) == self._builtin_reactions:
            # No reactions were added through kmock's DSL: skip its matching altogether.
            discovery = await self._serve_discovery(request)
            return discovery if discovery is not None else await self._serve(request)
        # Reactions added through kmock's DSL (faults, delays) come first, then the discovery
        # scaffold; what reaches kmock's catch-all 404 is ours to serve.
        try:
            return await super()._handle(request)
        except kmock.KubernetesEndpointNotFoundError:
            return await self._serve(request)

    async def _serve_discovery(self, request: kmock.Request) -> aiohttp.web.StreamResponse | None:
        parts = [p for p in request.url.path.split("/") if p]
        serve = None
        if not parts:
            serve = self._serve_root
        elif parts == ["version"]:
            serve = self._serve_server_version
        elif parts == ["api"]:
            serve = self._serve_api
        elif parts == ["apis"]:
            serve = self._serve_apis
        elif len(parts) == 2 and parts[0] == "api":
            serve = self._serve_version
        elif len(parts) == 2 and parts[0] == "apis":
            serve = self._serve_group
        elif len(parts) == 3 and parts[0] == "apis":
            serve = self._serve_version
        if serve is None:
            return None
        try:
            return aiohttp.web.json_response(await serve(request))
        except kmock.KubernetesError as exc:
            return await self._render_error(exc)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        route = parse_route(raw_request.path)
        resource = route.plural if route else "discovery"
        self.request_counts[_client(raw_request), _verb(raw_request), resource] += 1
        content_type = raw_request.headers.get("Content-Type", "")
        if "protobuf" in content_type:
            # Typed clients (helm, `kubectl create`) send built-ins as protobuf: read the few kinds
            # they create and answer in JSON, which they accept too.
            try:
                data = protobuf.decode_object(await raw_request.read())
            except protobuf.ProtobufError as exc:
                return self._error(errors.ApiError(415, "UnsupportedMediaType", str(exc)))
            return await self._serve_parsed(raw_request, data)
        if "cbor" in content_type:
            message = f"the emulated API server reads JSON, not {content_type}"
            return self._error(errors.ApiError(415, "UnsupportedMediaType", message))
        try:
            kmock_parsing.parse_path(raw_request.path)
        except ValueError:
            # kmock 0.8 cannot parse a path that ends in `/namespaces` (listing namespaces); build
            # the request ourselves, with what our own routing needs, and serve it as usual.
            return await self._serve_parsed(raw_request, None)
        return await super().__call__(raw_request)

    async def _serve_parsed(
        self, raw: aiohttp.web.BaseRequest, data: Any
    ) -> aiohttp.web.StreamResponse:
        """Serve a request kmock's parser cannot take, with `data` as its decoded body."""
        body = await raw.read()
        if data is None and body:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
        route = parse_route(raw.path)
        request = kmock.Request(
            id=len(self._requests),
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=dict(raw.query),
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            data=data,
            body=body,
            text=json.dumps(data) if data is not None else body.decode(errors="replace"),
            resource=kmock.resource(route.group, route.version, route.plural) if route else None,
            namespace=route.namespace or None if route else None,
            name=route.name if route else None,
        )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as exc:  # the same last resort kmock's own __call__ has
            return await self._render_error(exc)

    async def stop_watches(self) -> None:
        """End every open watch stream (clients reconnect, as after an API server restart)."""
        for queue in list(self._watch_queues):
            queue.put_nowait(_STOP)
        await asyncio.sleep(0)

    # ---- discovery (overrides of kmock's scaffold, computed from the store's types) ----------

    async def _serve_root(self, request: kmock.Request) -> dict[str, Any]:
        groups = sorted({rt.api_version for rt in self.store.types()})
        paths = ["/api", "/apis", "/openapi/v3", "/version"] + [
            f"/apis/{gv}" if "/" in gv else f"/api/{gv}" for gv in groups
        ]
        return {"paths": sorted(paths)}

    async def _serve_server_version(self, request: kmock.Request) -> dict[str, Any]:
        return SERVER_VERSION

    async def _serve_api(self, request: kmock.Request) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}

    async def _serve_apis(self, request: kmock.Request) -> dict[str, Any]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                self._group(g) for g in sorted({rt.group for rt in self.store.types()} - {""})
            ],
        }

    async def _serve_group(self, request: kmock.Request) -> Any:
        group = request.url.path.strip("/").split("/")[1]
        if group not in {rt.group for rt in self.store.types()}:
            raise _not_found()
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group(group)}

    async def _serve_version(self, request: kmock.Request) -> Any:
        parts = request.url.path.strip("/").split("/")
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        types = [rt for rt in self.store.types() if rt.group == group and rt.version == version]
        if not types:
            raise _not_found()
        resources = []
        for rt in sorted(types, key=lambda t: t.plural):
            resources.append(
                {
                    "name": rt.plural,
                    "singularName": rt.singular,
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": list(rt.verbs),
                    "shortNames": list(rt.short_names),
                    "categories": list(rt.categories),
                }
            )
            for sub in rt.subresources:
                verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
                kind = "Pod" if sub == "log" else rt.kind
                resources.append(
                    {
                        "name": f"{rt.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": kind,
                        "verbs": verbs,
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _group(self, group: str) -> dict[str, Any]:
        versions = sorted({rt.version for rt in self.store.types() if rt.group == group})
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    # ---- everything else ---------------------------------------------------------------------

    async def _serve(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path
        if path.startswith("/openapi/v3"):
            return await self._serve_openapi(path)
        route = parse_route(path)
        if route is None:
            raise kmock.KubernetesEndpointNotFoundError()
        try:
            return await self._serve_resource(request, route)
        except errors.ApiError as exc:
            return self._error(exc)
        except SelectorError as exc:
            return self._error(errors.bad_request(str(exc)))
        except Exception:  # a bug of ours: say so as a Status, keep the traceback in our log
            logger.exception("emulated API server: %s %s failed", request.method, path)
            internal = errors.ApiError(
                500, "InternalError", "the emulated API server failed on this request; see its log"
            )
            return self._error(internal)

    async def _serve_openapi(self, path: str) -> aiohttp.web.StreamResponse:
        types = self.store.types()
        if path.rstrip("/") == "/openapi/v3":
            return aiohttp.web.json_response(openapi.group_version_paths(types))
        gv = path.removeprefix("/openapi/v3/").strip("/")
        selected = [
            rt
            for rt in types
            if (f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}") == gv
        ]
        if not selected:
            return self._error(errors.ApiError(404, "NotFound", f"no OpenAPI document for {gv}"))
        return aiohttp.web.json_response(openapi.group_version_document(selected))

    async def _serve_resource(
        self, request: kmock.Request, route: Route
    ) -> aiohttp.web.StreamResponse:
        rt = self.store.type(route.group, route.version, route.plural)
        params = request.params
        method = str(getattr(request.method, "value", request.method)).upper()
        dry_run = params.get("dryRun") == "All"
        strict = params.get("fieldValidation", "").lower() == "strict"
        ns = route.namespace
        if rt.namespaced is False and ns:
            raise errors.ApiError(404, "NotFound", f"{rt.plural} is not namespaced")
        if method == "GET" and route.subresource == "log":
            return await self._serve_log(request, ns, route.name or "")
        if method == "GET" and route.name is None:
            matches = self._matcher(params)
            if params.get("watch") in ("true", "1"):
                return await self._watch(request, rt, ns, matches)
            items = self.store.list(rt, ns, matches, labels=self._labels(params))
            rv = str(self.store.resource_version)
            if self._wants_table(request):
                return aiohttp.web.json_response(
                    tables.table(rt, items, rv, params.get("includeObject", "Metadata"))
                )
            return aiohttp.web.json_response(
                {
                    "kind": f"{rt.kind}List",
                    "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }
            )
        if method == "GET":
            obj = self.store.get(rt, ns, route.name or "")
            if self._wants_table(request):
                return aiohttp.web.json_response(
                    tables.table(
                        rt,
                        [obj],
                        obj["metadata"]["resourceVersion"],
                        params.get("includeObject", "Metadata"),
                    )
                )
            return aiohttp.web.json_response(obj)
        body = request.data if isinstance(request.data, dict | list) else None
        if method == "POST" and route.name is None:
            body = check_shape(body)
            sent_ns = body.get("metadata", {}).get("namespace")
            if ns and sent_ns and sent_ns != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            created = self.store.create(rt, ns, body, dry_run=dry_run, strict=strict)
            return aiohttp.web.json_response(created, status=201)
        if method == "PUT" and route.name:
            body = check_shape(body)
            if body.get("metadata", {}).get("name", route.name) != route.name:
                raise errors.bad_request(
                    "the name of the object does not match the name on the URL"
                )
            updated = self.store.update(
                rt,
                ns,
                route.name,
                body,
                subresource=route.subresource,
                dry_run=dry_run,
                strict=strict,
            )
            return aiohttp.web.json_response(updated)
        if method == "PATCH" and route.name:
            content_type = request.headers.get("Content-Type", "application/merge-patch+json")
            if content_type.startswith(APPLY_PATCH):
                return self._server_side_apply(
                    rt, ns, route.name, route.subresource, request, dry_run, strict
                )
            patched = self.store.patch(
                rt,
                ns,
                route.name,
                body,
                content_type,
                subresource=route.subresource,
                dry_run=dry_run,
                strict=strict,
            )
            return aiohttp.web.json_response(patched)
        if method == "DELETE":
            options = body if isinstance(body, dict) else {}
            policy = params.get("propagationPolicy") or options.get("propagationPolicy")
            dry_run = dry_run or "All" in (options.get("dryRun") or [])
            if route.name:
                deleted = self.store.delete(rt, ns, route.name, propagation=policy, dry_run=dry_run)
                return aiohttp.web.json_response(deleted)
            doomed = self.store.list(rt, ns, self._matcher(params), labels=self._labels(params))
            for obj in doomed:
                self.store.delete(
                    rt,
                    obj["metadata"].get("namespace", ""),
                    obj["metadata"]["name"],
                    propagation=policy,
                    dry_run=dry_run,
                )
            return aiohttp.web.json_response(
                {
                    "kind": f"{rt.kind}List",
                    "apiVersion": rt.api_version,
                    "metadata": {},
                    "items": doomed,
                }
            )
        raise errors.ApiError(
            405, "MethodNotAllowed", f"the server does not allow {method} on this resource"
        )

    def _server_side_apply(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        subresource: str | None,
        request: kmock.Request,
        dry_run: bool,
        strict: bool,
    ) -> aiohttp.web.StreamResponse:
        try:
            applied = yaml.safe_load(request.text or "{}")
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"the applied configuration is not YAML: {exc}") from None
        if not isinstance(applied, dict):
            raise errors.bad_request("the applied configuration must be an object")
        try:
            self.store.get(rt, ns, name)
        except errors.ApiError as exc:
            if exc.code != 404 or subresource:
                raise
            created = self.store.create(rt, ns, applied, dry_run=dry_run, strict=strict)
            return aiohttp.web.json_response(created, status=201)
        patched = self.store.patch(
            rt,
            ns,
            name,
            applied,
            APPLY_PATCH,
            subresource=subresource,
            dry_run=dry_run,
            strict=strict,
        )
        return aiohttp.web.json_response(patched)

    async def _serve_log(
        self, request: kmock.Request, ns: str, pod: str
    ) -> aiohttp.web.StreamResponse:
        pods = self.store.type("", "v1", "pods")
        obj = self.store.get(pods, ns, pod)
        container = request.params.get("container")
        if container is None and len(obj.get("spec", {}).get("containers") or []) == 1:
            container = obj["spec"]["containers"][0]["name"]
        if self.log_source is None:
            raise errors.bad_request(
                f'container "{container}" in pod "{pod}" has no logs: no pod runner'
            )
        tail = _int_param(request.params, "tailLines")
        text, finished = self.log_source(ns, pod, container)
        if request.params.get("follow") not in ("true", "1") or finished:
            if tail is not None:
                text = "".join(text.splitlines(keepends=True)[-tail:] if tail else [])
            return aiohttp.web.Response(text=text, content_type="text/plain")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(_raw(request))
        sent = len(text)
        if tail is not None:
            text = "".join(text.splitlines(keepends=True)[-tail:] if tail else [])
        await response.write(text.encode())
        while not finished:
            await asyncio.sleep(0.2)
            text, finished = self.log_source(ns, pod, container)
            if len(text) > sent:
                await response.write(text[sent:].encode())
                sent = len(text)
        await response.write_eof()
        return response

    async def _watch(
        self,
        request: kmock.Request,
        rt: ResourceType,
        ns: str,
        matches: Callable[[dict[str, Any]], bool],
    ) -> aiohttp.web.StreamResponse:
        params = request.params
        timeout = _int_param(params, "timeoutSeconds")
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.watch_queue_limit)
        overflowed = False

        def listener(event: WatchEvent) -> None:
            nonlocal overflowed
            if event.key == rt.key and not overflowed:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    # A watcher this far behind is closed rather than handed a gap, as the real
                    # server does; its client lists again and watches from there.
                    overflowed = True

        rv_param = params.get("resourceVersion") or "0"
        initial_events = params.get("sendInitialEvents") == "true"
        backlog: list[tuple[str, dict[str, Any]]]
        if rv_param == "0" or initial_events:
            listed = self.store.list(rt, ns, matches, labels=self._labels(params))
            backlog = [("ADDED", obj) for obj in listed]
            last = self.store.resource_version
        else:
            try:
                events = self.store.events_since(rt, int(rv_param))
            except ValueError:
                raise errors.bad_request(f"invalid resourceVersion {rv_param!r}") from None
            except errors.ApiError as exc:
                backlog, last = [("ERROR", exc.status())], self.store.resource_version
                events = None
            if events is not None:
                backlog = [
                    (kind, e.object)
                    for e in events
                    if (not ns or e.namespace == ns) and (kind := _seen_as(e, matches))
                ]
                last = self.store.resource_version
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        self.store.add_listener(listener)
        self._watch_queues.add(queue)
        try:
            await response.prepare(_raw(request))
            as_table = self._wants_table(request)
            include = params.get("includeObject", "Metadata")
            first_table = True

            async def send(kind: str, obj: dict[str, Any]) -> None:
                nonlocal first_table
                if as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
                    rv = obj["metadata"].get("resourceVersion", "")
                    obj = tables.table(rt, [obj], rv, include)
                    if not first_table:
                        obj["columnDefinitions"] = []  # sent once, as the real server does
                    first_table = False
                await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

            for kind, obj in backlog:
                await send(kind, obj)
            if backlog and backlog[0][0] == "ERROR":
                return response
            if initial_events:
                # A streaming list (sendInitialEvents) ends its snapshot with this bookmark.
                end = {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version,
                    "metadata": {
                        "resourceVersion": str(last),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                await response.write(
                    json.dumps({"type": "BOOKMARK", "object": end}).encode() + b"\n"
                )
            deadline = time.monotonic() + timeout if timeout else None
            bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
            while True:
                # Without bookmarks, still wake up now and then to notice a client that left.
                wait = self.bookmark_interval if bookmarks else 30.0
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                try:
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    transport = _raw(request).transport
                    if transport is None or transport.is_closing():
                        break
                    if bookmarks:
                        mark = {
                            "kind": rt.kind,
                            "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": str(self.store.resource_version)},
                        }
                        await response.write(
                            json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n"
                        )
                    continue
                if event is _STOP or overflowed:
                    break
                if event.resource_version <= last or (ns and event.namespace != ns):
                    continue
                if kind := _seen_as(event, matches):
                    await send(kind, event.object)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.store.remove_listener(listener)
            self._watch_queues.discard(queue)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    @staticmethod
    def _matcher(params: Any) -> Callable[[dict[str, Any]], bool]:
        labels = label_selector(params.get("labelSelector"))
        fields = field_selector(params.get("fieldSelector"))
        return lambda obj: labels(obj) and fields(obj)

    @staticmethod
    def _labels(params: Any) -> dict[str, str]:
        return required_labels(params.get("labelSelector"))

    @staticmethod
    def _wants_table(request: kmock.Request) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    @staticmethod
    def _error(exc: errors.ApiError) -> aiohttp.web.Response:
        return aiohttp.web.json_response(exc.status(), status=exc.code)


def _not_found() -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=404,
        reason="NotFound",
        message="the server could not find the requested resource",
        details={
            "causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]
        },
    )


def _raw(request: kmock.Request) -> aiohttp.web.BaseRequest:
    """The aiohttp request behind a kmock request (needed to stream a response)."""
    raw = request._raw_request
    if raw is None:
        raise RuntimeError("a streamed response needs the HTTP request kmock received")
    return raw


def _int_param(params: Any, name: str) -> int | None:
    """A non-negative integer query parameter, checked before any response is started."""
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise errors.bad_request(f"{name} must be a non-negative integer, got {value!r}")
    return number


def _seen_as(event: WatchEvent, matches: Callable[[dict[str, Any]], bool]) -> str | None:
    """How a watcher with a selector sees a change: an object that starts matching is ADDED,
    one that stops matching is DELETED (so informers drop it), others as they happened."""
    now = matches(event.object)
    if event.type != "MODIFIED" or event.previous is None:
        return event.type if now else None
    before = matches(event.previous)
    if now and not before:
        return "ADDED"
    if before and not now:
        return "DELETED"
    return "MODIFIED" if now else None
