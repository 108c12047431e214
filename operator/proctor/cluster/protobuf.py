"""Just enough of Kubernetes' protobuf encoding to read what helm and `kubectl create` send.

Typed client-go clients (helm's release storage, kubectl's imperative generators) write built-in
objects as protobuf. This decodes request bodies of the few kinds they create here (Secret,
ConfigMap, Namespace, and DeleteOptions) into their JSON form; responses are always JSON, which
those clients accept too.
Field numbers are those of k8s.io/api's generated.proto.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"

Fields = dict[int, list[Any]]


class ProtobufError(ValueError):
    """A body this decoder cannot read (an unsupported kind, or not Kubernetes protobuf)."""


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded Kubernetes object (runtime.Unknown envelope)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf body (no k8s\\0 prefix)")
    envelope = _fields(body[len(MAGIC) :])
    type_meta = _fields(_one(envelope, 1, b""))
    api_version = _text(_one(type_meta, 1, b""))
    kind = _text(_one(type_meta, 2, b""))
    raw = _fields(_one(envelope, 2, b""))
    decoder = _KINDS.get(kind)
    if decoder is None:
        raise ProtobufError(
            f"{kind or 'this kind'} in protobuf is not supported; send JSON (kubectl apply -f)"
        )
    return {"apiVersion": api_version, "kind": kind, **decoder(raw)}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Fields:
    fields: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _one(fields: Fields, number: int, default: Any) -> Any:
    return fields.get(number, [default])[-1]


def _text(value: bytes) -> str:
    return value.decode()


def _map(fields: Fields, number: int, as_bytes: bool = False) -> dict[str, Any]:
    result = {}
    for entry in fields.get(number, []):
        pair = _fields(entry)
        key = _text(_one(pair, 1, b""))
        value = _one(pair, 2, b"")
        result[key] = base64.b64encode(value).decode() if as_bytes else _text(value)
    return result


def _metadata(fields: Fields) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for number, name in (
        (1, "name"),
        (2, "generateName"),
        (3, "namespace"),
        (6, "resourceVersion"),
    ):
        if number in fields and _one(fields, number, b""):
            meta[name] = _text(_one(fields, number, b""))
    for number, name in ((11, "labels"), (12, "annotations")):
        if number in fields:
            meta[name] = _map(fields, number)
    if 14 in fields:
        meta["finalizers"] = [_text(v) for v in fields[14]]
    return meta


def _secret(raw: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": _metadata(_fields(_one(raw, 1, b"")))}
    if 2 in raw:
        obj["data"] = _map(raw, 2, as_bytes=True)
    if 3 in raw:
        obj["type"] = _text(_one(raw, 3, b""))
    if 4 in raw:
        obj["stringData"] = _map(raw, 4)
    if 5 in raw:
        obj["immutable"] = bool(_one(raw, 5, 0))
    return obj


def _config_map(raw: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": _metadata(_fields(_one(raw, 1, b"")))}
    if 2 in raw:
        obj["data"] = _map(raw, 2)
    if 3 in raw:
        obj["binaryData"] = _map(raw, 3, as_bytes=True)
    return obj


def _namespace(raw: Fields) -> dict[str, Any]:
    return {"metadata": _metadata(_fields(_one(raw, 1, b"")))}


def _delete_options(raw: Fields) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if 1 in raw:
        options["gracePeriodSeconds"] = _one(raw, 1, 0)
    if 4 in raw:
        options["propagationPolicy"] = _text(_one(raw, 4, b""))
    if 5 in raw:
        options["dryRun"] = [_text(v) for v in raw[5]]
    return options


_KINDS = {
    "Secret": _secret,
    "ConfigMap": _config_map,
    "Namespace": _namespace,
    "DeleteOptions": _delete_options,
}
