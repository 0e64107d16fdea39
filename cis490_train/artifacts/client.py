"""Client of the artifact store's HTTP service, used by workers and operators.

Bundles are streamed both ways in 1 MiB pieces, so a multi-GiB checkpoint
never sits in memory; downloads are verified against their artifact id before
they replace anything.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from ..errors import AmbiguousArtifact, ArtifactNotFound, DigestMismatch, StoreAuthError, StoreError
from ..atomic import fsync_dir
from .bundle import BundleInfo
from .records import NAME, ArtifactMeta, ArtifactRecord, check_artifact_id
from .summary import Summary

CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadResult:
    artifact_id: str
    size: int
    path: str
    deduplicated: bool


def _file_chunks(f: BinaryIO, size: int, path: Path) -> Iterator[bytes]:
    """Exactly `size` bytes, as promised in Content-Length, or an error if the file shrank meanwhile."""
    left = size
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise StoreError(f"{path} shrank while it was being uploaded")
        left -= len(chunk)
        yield chunk


class StoreClient:
    """One store, one token; reuse an instance for its connection pool."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload(
        self,
        path: Path,
        artifact_id: str,
        *,
        model: str,
        mode: str,
        job_id: str = "",
        attempt: int = 0,
        host: str = "",
    ) -> UploadResult:
        """PUT the bundle at `path` under `artifact_id`; the store checks the digest while receiving."""
        check_artifact_id(artifact_id)
        meta = ArtifactMeta(model=model, mode=mode, job_id=job_id, attempt=attempt, host=host)
        if not self._token:
            raise StoreAuthError("no worker token: set CIS490_WORKER_TOKEN to the store's token")
        path = Path(path)
        url = f"{self.base_url}/v1/artifacts/{artifact_id}"
        try:
            f = path.open("rb")
        except OSError as exc:
            raise StoreError(f"cannot read bundle {path}: {exc.strerror}") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            headers = {
                "Authorization": f"Bearer {self._token}",
                "Content-Length": str(size),
                "Content-Type": "application/zstd",
                "X-Cis490-Model": meta.model,
                "X-Cis490-Mode": meta.mode,
                "X-Cis490-Job": meta.job_id,
                "X-Cis490-Attempt": str(meta.attempt),
                "X-Cis490-Host": meta.host,
            }
            response = self._send("PUT", url, headers=headers, content=_file_chunks(f, size, path))
        body = response.json()
        return UploadResult(
            artifact_id=body["artifact_id"],
            size=int(body["size"]),
            path=body["path"],
            deduplicated=bool(body["deduplicated"]),
        )

    def download(self, artifact_id: str, dest: Path) -> BundleInfo:
        """Stream the bundle to a temp file beside `dest`, verify its sha256, then move it into place."""
        check_artifact_id(artifact_id)
        dest = Path(dest)
        url = f"{self.base_url}/v1/artifacts/{artifact_id}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with self._http.stream("GET", url) as response:
                        if response.status_code != 200:
                            response.read()
                            self._raise_for_status(response, url)
                        for chunk in response.iter_bytes():
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                except httpx.HTTPError as exc:
                    raise StoreError(f"download from {url} failed: {exc}") from None
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != artifact_id:
                raise DigestMismatch(f"{url} sent {size} bytes with sha256 {digest.hexdigest()}, not {artifact_id}")
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(dest.parent)
        return BundleInfo(path=dest, sha256=artifact_id, size=size)

    def list(self, model: str | None = None, mode: str | None = None) -> list[ArtifactRecord]:
        params = {}
        for key, value in (("model", model), ("mode", mode)):
            if value is not None:
                if not NAME.fullmatch(value):
                    raise StoreError(f"{key} {value!r} is not 1-64 of a-z, 0-9, _")
                params[key] = value
        response = self._send("GET", f"{self.base_url}/v1/artifacts", params=params)
        return [ArtifactRecord.from_json(row) for row in response.json()]

    def resolve(self, prefix: str) -> str:
        """A full artifact id, or the one stored artifact whose id starts with `prefix` (6+ characters)."""
        if len(prefix) == 64:
            return prefix
        found = [r.artifact_id for r in self.list() if r.artifact_id.startswith(prefix.lower())] if len(prefix) >= 6 else []
        if len(found) == 1:
            return found[0]
        error = AmbiguousArtifact if found else ArtifactNotFound
        raise error(
            f"{prefix!r} names {'more than one' if found else 'no'} artifact in the store; give a bundle path, a full id or a unique prefix of 6+ characters"
        )

    def meta(self, artifact_id: str) -> tuple[ArtifactRecord, Summary | None]:
        """A stored bundle's index row and summary (None without a report), checked as on the store."""
        check_artifact_id(artifact_id)
        url = f"{self.base_url}/v1/artifacts/{artifact_id}/meta"
        response = self._send("GET", url)
        try:
            body = response.json()
            record = ArtifactRecord.from_json(body["record"])
            summary = None if body["summary"] is None else Summary.from_report(body["summary"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{url}: the answer is not an artifact's record and summary ({exc!r})") from None
        if record.artifact_id != artifact_id:
            raise StoreError(f"{url}: the answer describes artifact {record.artifact_id}, not {artifact_id}")
        return record, summary

    def health(self) -> dict[str, Any]:
        return self._send("GET", f"{self.base_url}/v1/health").json()

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot reach the artifact store at {url}: {exc}") from None
        self._raise_for_status(response, url)
        return response

    @staticmethod
    def _raise_for_status(response: httpx.Response, url: str) -> None:
        status = response.status_code
        if status < 400:
            return
        try:
            detail = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200] or response.reason_phrase
        if status == 401:
            raise StoreAuthError(f"{url}: the store refused the worker token ({detail})")
        if status == 404:
            raise ArtifactNotFound(f"{url}: {detail}")
        if status == 422:
            raise DigestMismatch(f"{url}: {detail}")
        raise StoreError(f"{url}: HTTP {status}: {detail}")
