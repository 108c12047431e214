"""Reading the protobuf bodies typed clients send, built here with a tiny encoder."""

from __future__ import annotations

import pytest

from proctor.cluster.protobuf import MAGIC, ProtobufError, decode_object


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry(number: int, key: str, value: bytes) -> bytes:
    return _field(number, _field(1, key.encode()) + _field(2, value))


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return MAGIC + _field(1, type_meta) + _field(2, raw)


def test_a_helm_release_secret_decodes_to_json():
    metadata = _field(1, b"sh.helm.release.v1.proctor.v1") + _entry(11, "owner", b"helm")
    raw = (
        _field(1, metadata)
        + _entry(2, "release", b"\x00\x01binary")
        + _field(3, b"helm.sh/release.v1")
    )
    obj = decode_object(_envelope("v1", "Secret", raw))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sh.helm.release.v1.proctor.v1", "labels": {"owner": "helm"}},
        "data": {"release": "AAFiaW5hcnk="},
        "type": "helm.sh/release.v1",
    }


def test_unsupported_kinds_and_non_protobuf_bodies_are_refused():
    with pytest.raises(ProtobufError, match="Pod in protobuf is not supported"):
        decode_object(_envelope("v1", "Pod", b""))
    with pytest.raises(ProtobufError, match="not a Kubernetes protobuf body"):
        decode_object(b'{"kind": "Secret"}')
