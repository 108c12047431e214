"""Object stores, and checkpoints round-tripping through a real S3 endpoint (moto's server)."""

from __future__ import annotations

import pytest

from proctor.storage import FileStore, S3Store, open_store
from tests.support.s3 import MotoServer, s3_environment
from tests.train.test_trainer import DIGITS, _train


@pytest.fixture(scope="module")
def s3_endpoint():
    server = MotoServer()
    server.start()
    with s3_environment(server) as env:
        import boto3

        boto3.client("s3").create_bucket(Bucket="checkpoints")
        yield env
    server.stop()


def test_stores_share_one_behaviour(tmp_path, s3_endpoint):
    for store in (FileStore(tmp_path / "files"), open_store("s3://checkpoints/unit")):
        store.put("a/one.bin", b"1")
        store.put("a/two.bin", b"22")
        store.put("b/three.bin", b"333")
        assert store.list("a/") == ["a/one.bin", "a/two.bin"]
        assert store.get("b/three.bin") == b"333"
        store.delete("a/one.bin")
        assert store.list() == ["a/two.bin", "b/three.bin"]
        with pytest.raises(ValueError, match="leaves the store"):
            store.put("../outside", b"x")


def test_uris_name_their_store(tmp_path):
    assert isinstance(open_store(f"file://{tmp_path}"), FileStore)
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3:///prefix")
    with pytest.raises(ValueError, match="unsupported storage URI"):
        open_store("gs://bucket/x")
    s3 = open_store("s3://bucket/deep/prefix")
    assert isinstance(s3, S3Store)
    assert s3.url("step-1/COMPLETE") == "s3://bucket/deep/prefix/step-1/COMPLETE"


@pytest.mark.slow
def test_checkpoints_round_trip_through_s3_and_resume(s3_endpoint):
    args = (
        "--entrypoint",
        DIGITS,
        "--checkpoint-uri",
        "s3://checkpoints/exp-1",
        "--checkpoint-every-steps",
        "25",
        "--keep-last",
        "2",
    )
    first = _train(*args, "--max-steps", "75", env=s3_endpoint)
    assert first.returncode == 0, first.stderr
    keys = open_store("s3://checkpoints/exp-1").list()
    assert "step-000000075/COMPLETE" in keys
    assert not any(k.startswith("step-000000025/") for k in keys), "only the last 2 are kept"
    second = _train(*args, "--max-steps", "100", env=s3_endpoint)
    assert second.returncode == 0, second.stderr
    assert "resumed from step 75" in second.stdout
    assert "step-000000100/COMPLETE" in open_store("s3://checkpoints/exp-1").list()


def test_files_stream_in_and_out_of_both_stores(tmp_path, s3_endpoint):
    source = tmp_path / "weights.bin"
    source.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    for store in (FileStore(tmp_path / "files"), open_store("s3://checkpoints/streamed")):
        store.put_file("step-1/weights.bin", source)
        target = tmp_path / f"back-{type(store).__name__}.bin"
        store.get_file("step-1/weights.bin", target)
        assert target.read_bytes() == source.read_bytes()


def test_an_unreachable_or_refusing_store_raises_storage_error_naming_what_to_check(s3_endpoint):
    import boto3
    from botocore.config import Config

    from proctor.storage import StorageError

    missing = open_store("s3://no-such-bucket/x")
    with pytest.raises(StorageError, match=r"no-such-bucket.*AWS_ENDPOINT_URL"):
        missing.list()
    closed = boto3.client(
        "s3", endpoint_url="http://127.0.0.1:9", config=Config(retries={"max_attempts": 1})
    )
    with pytest.raises(OSError, match="AWS_ENDPOINT_URL"):  # StorageError is an OSError
        S3Store("checkpoints", "x", client=closed).get("a")
