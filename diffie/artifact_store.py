"""Where a finished run's files are kept for the API to serve.

The embedded default is the local folder (``<DIFFIE_DATA_DIR>/runs/<id>/``): the API and the
workers share a disk. When they do not (API and worker hosts apart), set
``DIFFIE_ARTIFACT_STORE=s3://BUCKET/PREFIX`` (any S3-compatible store: AWS S3, MinIO, Ceph,
Garage; ``DIFFIE_S3_ENDPOINT_URL`` for one that is not AWS; credentials from the usual
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / instance role):

- a worker writes the run's folder on its own disk as always, and uploads every file to
  ``PREFIX/runs/<run id>/<name>`` before it records the run as finished (so a finished run's
  files are always there);
- the API host fetches a file from the store the first time it is asked for it, into its own
  ``runs/<id>/`` folder (a cache: every reader — the report, its images, traces, the MCP
  finding picture — then reads a local file as before).

Names are the run folder's flat, Diffie-generated names (:data:`diffie.artifacts.NAME_RE`):
a key is never built from anything the app under test chose.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from diffie.artifacts import NAME_RE
from diffie.config import Settings
from diffie.errors import ConfigError, DiffieError

log = logging.getLogger(__name__)

UPLOAD_THREADS = 8
ATTEMPTS = 3


class StoreError(DiffieError):
    """The artifact store did not take or give a file (after retries)."""


@dataclass(frozen=True)
class Transfer:
    files: int
    bytes: int
    seconds: float


class ArtifactStore(Protocol):
    def upload(self, run_id: str, folder: Path) -> Transfer:
        """Every file of a run's folder to the store (raises StoreError)."""
        ...

    def get(self, run_id: str, name: str) -> bytes | None:
        """One file of a run (None: the store has no such file)."""
        ...


class S3Store:
    """An S3-compatible bucket (boto3)."""

    def __init__(self, url: str, *, endpoint_url: str | None = None,
                 region: str = "us-east-1", client: Any = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"DIFFIE_ARTIFACT_STORE {url!r} is not s3://BUCKET[/PREFIX]")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.url = url
        if client is None:
            import boto3  # heavy; only a deployment with a store loads it
            from botocore.config import Config
            client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region,
                                  config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                                connect_timeout=10, read_timeout=60))
        self.client = client

    def key(self, run_id: str, name: str) -> str:
        if not NAME_RE.match(name) or ".." in name or not NAME_RE.match(run_id):
            raise DiffieError(f"invalid artifact name {run_id}/{name}")
        return "/".join(p for p in (self.prefix, "runs", run_id, name) if p)

    def upload(self, run_id: str, folder: Path) -> Transfer:
        started = time.monotonic()
        files = [p for p in sorted(folder.iterdir()) if p.is_file() and NAME_RE.match(p.name)]

        def put(path: Path) -> int:
            for attempt in range(ATTEMPTS):
                try:
                    self.client.upload_file(str(path), self.bucket, self.key(run_id, path.name))
                    return path.stat().st_size
                except Exception as exc:                # boto3's errors, network errors
                    if attempt == ATTEMPTS - 1:
                        raise StoreError(
                            f"the artifact store {self.url} did not take {path.name} of run "
                            f"{run_id} ({type(exc).__name__}: {str(exc)[:300]}); check "
                            "DIFFIE_ARTIFACT_STORE, DIFFIE_S3_ENDPOINT_URL and the "
                            "credentials") from None
                    time.sleep(0.5 * 2 ** attempt)
            return 0

        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            sizes = list(pool.map(put, files))
        return Transfer(len(files), sum(sizes), time.monotonic() - started)

    def get(self, run_id: str, name: str) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(run_id, name))
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StoreError(f"the artifact store {self.url} did not give {name} of run "
                             f"{run_id} ({type(exc).__name__}: {str(exc)[:300]})") from None
        data: bytes = answer["Body"].read()
        return data


def store_of(settings: Settings) -> ArtifactStore | None:
    """The configured store; None: the local folder is the store."""
    if not settings.artifact_store:
        return None
    return S3Store(settings.artifact_store, endpoint_url=settings.s3_endpoint_url or None,
                   region=settings.s3_region)


def cache_locally(store: ArtifactStore, folder: Path, run_id: str, name: str) -> Path | None:
    """``folder/name`` (the API host's copy), fetched from ``store`` when absent; None when the
    store has no such file either. Written atomically: a reader never sees half a file."""
    path = folder / name
    if path.is_file():
        return path
    data = store.get(run_id, name)
    if data is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fetch-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path
