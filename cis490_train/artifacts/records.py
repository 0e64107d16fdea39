"""Names the store accepts and the index row it keeps for each artifact.

Every name that reaches a path is checked against a closed pattern here, so
no request can steer a write outside the store's root. The client and the
store share these checks so a bad name fails before any byte is sent.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import StoreError
from ..ids import HOST, JOB_ID

ARTIFACT_ID = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[a-z0-9_]{1,64}")
MAX_ATTEMPT = 1_000_000
BUNDLE_NAME = "bundle.tar.zst"


def check_artifact_id(value: str) -> str:
    if not isinstance(value, str) or not ARTIFACT_ID.fullmatch(value):
        raise StoreError(f"artifact id {value!r} is not 64 lowercase hex digits (a sha256)")
    return value


def _check(pattern: re.Pattern[str], what: str, rule: str, value: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise StoreError(f"{what} {value!r} is not valid: {rule}")
    return value


@dataclass(frozen=True)
class ArtifactMeta:
    """What an uploader declares about a bundle; checked on construction."""

    model: str
    mode: str
    job_id: str = ""
    attempt: int = 0
    host: str = ""

    def __post_init__(self) -> None:
        _check(NAME, "model", "1-64 of a-z, 0-9, _", self.model)
        _check(NAME, "mode", "1-64 of a-z, 0-9, _", self.mode)
        if self.job_id:
            _check(JOB_ID, "job id", "16 lowercase hex digits or empty", self.job_id)
        _check(HOST, "host", "up to 253 of A-Z, a-z, 0-9, '.', '_', '-'", self.host)
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or not 0 <= self.attempt <= MAX_ATTEMPT:
            raise StoreError(f"attempt {self.attempt!r} is not an integer in 0..{MAX_ATTEMPT}")


def relative_path(artifact_id: str, meta: ArtifactMeta) -> str:
    """The seed's layout: `models/<model>_<mode>/<sha256>/bundle.tar.zst`, relative to the root."""
    check_artifact_id(artifact_id)
    return f"models/{meta.model}_{meta.mode}/{artifact_id}/{BUNDLE_NAME}"


@dataclass(frozen=True)
class ArtifactRecord:
    """One row of `index.jsonl`: one stored bundle file."""

    artifact_id: str
    model: str
    mode: str
    job_id: str
    attempt: int
    host: str
    size: int
    path: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ArtifactRecord:
        """Rebuild a row, re-checking its names: the index is data read from disk."""
        try:
            record = cls(
                artifact_id=check_artifact_id(row["artifact_id"]),
                model=row["model"],
                mode=row["mode"],
                job_id=row.get("job_id") or "",
                attempt=int(row.get("attempt") or 0),
                host=row.get("host") or "",
                size=int(row["size"]),
                path=row["path"],
                created_at=str(row.get("created_at") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"index row {row!r} is malformed: {exc}") from None
        meta = ArtifactMeta(record.model, record.mode, record.job_id, record.attempt, record.host)
        if record.path != relative_path(record.artifact_id, meta):
            raise StoreError(f"index row for {record.artifact_id} has path {record.path!r} outside the layout")
        return record
