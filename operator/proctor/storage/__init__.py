"""Object storage behind one small interface: `s3://` (any S3-compatible endpoint, boto3) and
`file://` (a local directory, for local mode and tests). Used by the trainer's checkpoints and,
later, the watchdog's recovery bundles.

    store = open_store("s3://bucket/prefix")   # endpoint and credentials from the environment
    store.put("step-000000100/model.pt", data)
    store.list("step-")                        # keys under the prefix, sorted

Credentials never come from a spec: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (from a
Secret in the pod) or the pod's workload identity; the endpoint from AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL.
"""

from proctor.storage.stores import FileStore, ObjectStore, S3Store, StorageError, open_store

__all__ = ["FileStore", "ObjectStore", "S3Store", "StorageError", "open_store"]
