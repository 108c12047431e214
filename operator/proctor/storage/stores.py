"""The object stores: a protocol and its two implementations."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class StorageError(OSError):
    """The object store could not be reached or refused a request (an OSError, like a local
    file that cannot be read, so callers handle both alike). The message names the endpoint
    variable to check; never a credential. `transient`: the store is unreachable, overloaded or
    failing (a connection refused or cut, a timeout, a 5xx, SlowDown), so the same request may
    succeed later; not for a refusal such as NoSuchBucket or AccessDenied."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# ClientError codes of an S3 service that is overloaded or failing, not refusing.
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
}


class ObjectStore(Protocol):
    """Keys are '/'-separated paths relative to the store's root."""

    uri: str

    def put(self, key: str, data: bytes) -> None: ...

    def put_file(self, key: str, path: Path) -> None: ...

    def get_file(self, key: str, path: Path) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str = "") -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str) -> str: ...


class FileStore:
    """A local directory; writes go to a temporary name and are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = root.as_uri()

    def put(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # durable before it is published: a node crash included
        partial.replace(target)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(path, partial)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(target)

    def get_file(self, key: str, path: Path) -> None:
        shutil.copyfile(self._path(key), path)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.exists():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not k.endswith(".partial"))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} leaves the store's root {self.root}")
        return path


def _s3_errors(method: Callable[P, T]) -> Callable[P, T]:
    """botocore's errors (connection refused, access denied, no such bucket) as StorageError."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        from boto3.exceptions import Boto3Error  # type: ignore[import-untyped]
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
            HTTPClientError,
        )
        from botocore.exceptions import ConnectionError as EndpointUnreachable

        try:
            return method(*args, **kwargs)
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            store = args[0]
            transient = isinstance(exc, EndpointUnreachable | HTTPClientError)
            if isinstance(exc, ClientError):
                error = exc.response.get("Error") or {}
                status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
                transient = error.get("Code") in _TRANSIENT_CODES or int(status) >= 500
            raise StorageError(
                f"{getattr(store, 'uri', 's3')}: {exc} (endpoint: AWS_ENDPOINT_URL_S3 or "
                "AWS_ENDPOINT_URL; credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the "
                "pod's identity)",
                transient=transient,
            ) from None

    return wrapper


class S3Store:
    """A bucket and prefix of an S3-compatible service."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        import boto3  # type: ignore[import-untyped]  # the `train` and `watchdog` extras

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.client = client or boto3.client("s3", endpoint_url=endpoint)

    @_s3_errors
    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    @_s3_errors
    def put_file(self, key: str, path: Path) -> None:
        """Streamed from disk, multipart above boto3's threshold: no size limit, no copy in RAM."""
        self.client.upload_file(str(path), self.bucket, self._key(key))

    @_s3_errors
    def get_file(self, key: str, path: Path) -> None:
        self.client.download_file(self.bucket, self._key(key), str(path))

    @_s3_errors
    def get(self, key: str) -> bytes:
        response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        body: bytes = response["Body"].read()
        return body

    @_s3_errors
    def list(self, prefix: str = "") -> list[str]:
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                keys.append(item["Key"][len(self.prefix) + 1 :] if self.prefix else item["Key"])
        return sorted(keys)

    @_s3_errors
    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _key(self, key: str) -> str:
        if ".." in key.split("/"):
            raise ValueError(f"key {key!r} leaves the store's prefix")
        return f"{self.prefix}/{key}" if self.prefix else key


def open_store(uri: str) -> ObjectStore:
    """The store a `file://`, `s3://` URI (or a plain local path) names."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"{uri!r} names no bucket: write s3://bucket/prefix")
        return S3Store(bucket, prefix)
    if uri.startswith("file://"):
        return FileStore(Path(uri.removeprefix("file://")))
    if "://" in uri:
        raise ValueError(f"unsupported storage URI {uri!r}: use s3://bucket/prefix or file:///path")
    return FileStore(Path(uri))
