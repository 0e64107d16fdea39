"""The store's files: content-addressed bundles under a root, and an append-only index.

Layout (the seed's, so old indexes and paths keep working)::

    <root>/models/<model>_<mode>/<sha256>/bundle.tar.zst
    <root>/models/<model>_<mode>/<sha256>/summary.json   what the results page shows (see `summary`)
    <root>/index.jsonl        one JSON row per stored file, appended, never rewritten
    <root>/tmp/               uploads in progress (same filesystem, so the final rename is atomic)

An upload is hashed while it is written, so the digest check costs no second
read. Commit is the only step that touches shared state; it runs under an
exclusive lock so that concurrent uploads of the same bytes end as one file and
one index row. One process owns a root at a time: it sweeps `tmp/` at start,
which would destroy another live process's uploads.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ArtifactNotFound, DigestMismatch, StoreError
from ..atomic import fsync_dir, write_json
from .records import ArtifactMeta, ArtifactRecord, check_artifact_id, relative_path
from .summary import SUMMARY_NAME, Summary, load_summary, summarise_bundle

log = logging.getLogger("cis490_train.store")

INDEX_NAME = "index.jsonl"
OWNER_LOCK = ".owner.lock"
COMMIT_LOCK = ".commit.lock"
TMP_SUFFIX = ".part"


@dataclass(frozen=True)
class CommitResult:
    record: ArtifactRecord
    deduplicated: bool


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Upload:
    """One incoming bundle: a temp file under `tmp/` plus a running sha256.

    Finish with `commit()` or `abort()`; used as a context manager it aborts
    unless committed, so an exception never leaves a temp file behind.
    """

    def __init__(self, store: ArtifactStore, artifact_id: str, meta: ArtifactMeta):
        self.artifact_id = check_artifact_id(artifact_id)
        self.meta = meta
        self._store = store
        self._digest = hashlib.sha256()
        self._lock = threading.Lock()
        self.size = 0
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix=f"{artifact_id}.", suffix=TMP_SUFFIX)
        self._fd: int | None = fd
        self.temp_path = Path(name)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def write(self, data: bytes | memoryview) -> None:
        with self._lock:
            if self._fd is None:
                raise StoreError(f"upload of {self.artifact_id} is already finished")
            self._digest.update(data)
            _write_all(self._fd, data)
            self.size += len(data)

    def abort(self) -> None:
        """Drop the upload and its temp file; a no-op once committed or aborted."""
        with self._lock:
            if self._fd is not None:
                self._close_and_unlink()

    def commit(self) -> CommitResult:
        """Check the digest, make the bytes durable, and move them into the layout (or dedup)."""
        with self._lock:
            if self._fd is None:
                raise StoreError(f"upload of {self.artifact_id} is already finished")
            digest = self._digest.hexdigest()
            if digest != self.artifact_id:
                self._close_and_unlink()
                raise DigestMismatch(
                    f"received {self.size} bytes with sha256 {digest}, not the claimed artifact id {self.artifact_id}"
                )
            try:
                os.fsync(self._fd)
            except OSError:
                self._close_and_unlink()
                raise
            os.close(self._fd)
            self._fd = None
            try:
                summary = summarise_bundle(self.temp_path)
                return self._store._commit(self.temp_path, self.artifact_id, self.meta, self.size, summary)
            finally:
                self.temp_path.unlink(missing_ok=True)

    def _close_and_unlink(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self.temp_path.unlink(missing_ok=True)


class ArtifactStore:
    """A store root owned by this process; see the module docstring for the layout."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.models_dir = self.root / "models"
        self.tmp_dir = self.root / "tmp"
        self.index_path = self.root / INDEX_NAME
        for directory in (self.root, self.models_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._owner_fd = os.open(self.root / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._owner_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._owner_fd)
            raise StoreError(f"another store process is already serving {self.root}") from None
        self._cache_lock = threading.Lock()
        self._rows: list[ArtifactRecord] = []
        self._by_id: dict[str, ArtifactRecord] = {}
        self._by_path: dict[str, ArtifactRecord] = {}
        self._index_key: tuple[int, int] | None = None
        self._index_offset = 0
        self._summaries: dict[str, Summary] = {}
        self._sweep_tmp()
        self._terminate_torn_row()
        self._refresh()

    def close(self) -> None:
        if self._owner_fd >= 0:
            os.close(self._owner_fd)
            self._owner_fd = -1

    def __enter__(self) -> ArtifactStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin_upload(self, artifact_id: str, meta: ArtifactMeta) -> Upload:
        return Upload(self, artifact_id, meta)

    def lookup(self, artifact_id: str) -> ArtifactRecord:
        check_artifact_id(artifact_id)
        with self._cache_lock:
            self._refresh()
            record = self._by_id.get(artifact_id)
        if record is None:
            raise ArtifactNotFound(f"no artifact {artifact_id} in the store")
        return record

    def bundle_path(self, record: ArtifactRecord) -> Path:
        return self.root / record.path

    def summary(self, record: ArtifactRecord) -> Summary | None:
        """The kept summary of a stored bundle; None for bundles stored before summaries, or without a report.

        A summary never changes once written (its folder is content-addressed), so it is read once.
        """
        with self._cache_lock:
            cached = self._summaries.get(record.path)
        if cached is not None:
            return cached
        summary = load_summary(self.bundle_path(record).parent / SUMMARY_NAME)
        if summary is not None:
            with self._cache_lock:
                self._summaries[record.path] = summary
        return summary

    def list(self, model: str | None = None, mode: str | None = None) -> list[ArtifactRecord]:
        with self._cache_lock:
            self._refresh()
            rows = list(self._rows)
        return [r for r in rows if (model is None or r.model == model) and (mode is None or r.mode == mode)]

    def count(self) -> int:
        with self._cache_lock:
            self._refresh()
            return len(self._rows)

    def _sweep_tmp(self) -> None:
        """Uploads a crashed process left half-written can never be committed: remove them."""
        for entry in os.scandir(self.tmp_dir):
            if entry.is_file(follow_symlinks=False) and entry.name.endswith(TMP_SUFFIX):
                os.unlink(entry.path)
                log.info("removed stale upload %s", entry.name)

    def _terminate_torn_row(self) -> None:
        """A crash mid-append can leave a row without its newline; end it so the next row stays whole."""
        try:
            with self.index_path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
        except OSError:
            return
        if last != b"\n":
            self._append_index(b"\n")

    def _refresh(self) -> None:
        """Read rows appended since the last look; re-read all if the file was replaced or shrank."""
        try:
            st = self.index_path.stat()
        except FileNotFoundError:
            self._rows, self._by_id, self._by_path = [], {}, {}
            self._index_key, self._index_offset = None, 0
            return
        key = (st.st_dev, st.st_ino)
        if key != self._index_key or st.st_size < self._index_offset:
            self._rows, self._by_id, self._by_path = [], {}, {}
            self._index_key, self._index_offset = key, 0
        if st.st_size == self._index_offset:
            return
        with self.index_path.open("rb") as f:
            f.seek(self._index_offset)
            chunk = f.read(st.st_size - self._index_offset)
        complete = chunk.rfind(b"\n") + 1
        for line in chunk[:complete].splitlines():
            if line.strip():
                self._add_row(line)
        self._index_offset += complete

    def _add_row(self, line: bytes) -> None:
        try:
            record = ArtifactRecord.from_json(json.loads(line))
        except (ValueError, StoreError) as exc:
            log.warning("skipping unreadable row in %s: %s", self.index_path, exc)
            return
        if record.path in self._by_path:
            return
        self._rows.append(record)
        self._by_path[record.path] = record
        self._by_id.setdefault(record.artifact_id, record)

    @contextmanager
    def _commit_lock(self) -> Iterator[None]:
        """Exclusive across threads and processes: each open() is its own flock holder."""
        fd = os.open(self.root / COMMIT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _commit(
        self, temp: Path, artifact_id: str, meta: ArtifactMeta, size: int, summary: Summary | None = None
    ) -> CommitResult:
        """Move a verified, fsync'd temp file into the layout; the caller removes `temp` if it is left.

        The summary is written before the index row, so a listed artifact that has one shows it.
        """
        rel = relative_path(artifact_id, meta)
        final = self.root / rel
        with self._commit_lock():
            with self._cache_lock:
                self._refresh()
                existing = self._by_path.get(rel)
            if summary is not None and not (final.parent / SUMMARY_NAME).exists():
                write_json(final.parent / SUMMARY_NAME, summary.to_json())
            if final.exists():
                if existing is not None:
                    return CommitResult(existing, deduplicated=True)
                record = self._record(artifact_id, meta, final.stat().st_size, rel)
                self._append_row(record)
                return CommitResult(record, deduplicated=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, final)
            for directory in (final.parent, final.parent.parent, self.models_dir):
                fsync_dir(directory)
            if existing is not None:
                return CommitResult(existing, deduplicated=False)
            record = self._record(artifact_id, meta, size, rel)
            self._append_row(record)
            return CommitResult(record, deduplicated=False)

    @staticmethod
    def _record(artifact_id: str, meta: ArtifactMeta, size: int, rel: str) -> ArtifactRecord:
        return ArtifactRecord(
            artifact_id=artifact_id,
            model=meta.model,
            mode=meta.mode,
            job_id=meta.job_id,
            attempt=meta.attempt,
            host=meta.host,
            size=size,
            path=rel,
            created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )

    def _append_row(self, record: ArtifactRecord) -> None:
        line = json.dumps(record.to_json(), separators=(",", ":")) + "\n"
        created = not self.index_path.exists()
        self._append_index(line.encode())
        if created:
            fsync_dir(self.root)
        with self._cache_lock:
            self._refresh()

    def _append_index(self, data: bytes) -> None:
        fd = os.open(self.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
