"""`bundle.tar.zst`: a deterministic tar of a training output, zstd-compressed in one pass.

Deterministic so that the artifact id (sha256 of the bundle) depends only on
the files' names, contents and executable bits: retraining to identical bytes
deduplicates in the store. Level 3 with every core because checkpoints barely
compress (ratio ~1.08 at any level); higher levels only burn CPU. Multi-threaded
zstd output does not depend on the number of worker threads, so hosts with
different core counts produce the same bytes. The report goes first, so the
store can read a bundle's metrics without decompressing its weights.

A bundle is untrusted when it is read back: every extraction caps what its
members may declare in all, max(256 MiB, 32 x the bundle's size) and never
more than 128 GiB, and their number, 10,000; each cap is checked before the
member is written. Tar metadata headers (pax, GNU long names) are capped at
64 KiB, since tarfile holds them in memory and they count toward no member.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from ..atomic import fsync_dir
from ..errors import StoreError

ZSTD_LEVEL = 3
COPY_CHUNK = 1 << 20
REPORT_NAME = "report.json"
# Checkpoints barely compress (ratio ~1.08) and the JSON beside them is small, so an honest
# bundle expands to a few times its size at most; 32x is ample, the floor covers small models
# whose JSON dominates, and the hard cap is twice the largest upload the store takes by default.
MIN_EXPANDED_BYTES = 256 << 20
EXPANSION_RATIO = 32
MAX_EXPANDED_BYTES = 128 << 30
MAX_MEMBERS = 10_000
MAX_HEADER_BYTES = 64 << 10
_METADATA_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                   tarfile.GNUTYPE_LONGLINK)


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    sha256: str
    size: int


class _HashingSink:
    """The file under the compressor: hashes and counts what reaches the disk, so nothing is re-read."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def _walk(directory: Path, root: Path) -> Iterator[tuple[Path, str]]:
    """Depth-first, sorted by name after a top-level `report.json`, names relative to `root`
    (the bundle has no top folder).

    Links are refused rather than followed: a bundle holds only what the trainer wrote.
    """
    top = directory == root
    for entry in sorted(os.scandir(directory), key=lambda e: (not (top and e.name == REPORT_NAME), e.name)):
        path = Path(entry.path)
        arcname = path.relative_to(root).as_posix()
        if entry.is_symlink():
            raise StoreError(f"cannot bundle {path}: symbolic links are not allowed in a bundle")
        if entry.is_dir(follow_symlinks=False):
            yield path, arcname
            yield from _walk(path, root)
        elif entry.is_file(follow_symlinks=False):
            yield path, arcname
        else:
            raise StoreError(f"cannot bundle {path}: only regular files and directories are allowed")


def _tarinfo(path: Path, arcname: str) -> tarfile.TarInfo:
    """A header with only what matters: name, type, size, executable bit. No owner, no time."""
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    executable = bool(st.st_mode & stat.S_IXUSR)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
        info.mode = 0o755 if executable else 0o644
    return info


def make_bundle(src_dir: Path, dest: Path) -> BundleInfo:
    """Pack `src_dir`'s contents into `dest` atomically and return its sha256 and size."""
    src_dir = Path(src_dir)
    dest = Path(dest)
    if not src_dir.is_dir():
        raise StoreError(f"cannot bundle {src_dir}: not a directory")
    if dest.resolve().is_relative_to(src_dir.resolve()):
        raise StoreError(f"cannot write the bundle {dest} inside the folder it packs ({src_dir})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            sink = _HashingSink(raw)
            compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
            with compressor.stream_writer(sink, closefd=False) as zw:
                with tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT, bufsize=COPY_CHUNK,
                                  copybufsize=COPY_CHUNK) as tar:
                    for path, arcname in _walk(src_dir, src_dir):
                        info = _tarinfo(path, arcname)
                        if info.isdir():
                            tar.addfile(info)
                        else:
                            with path.open("rb") as f:
                                tar.addfile(info, f)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return BundleInfo(path=dest, sha256=sink.digest.hexdigest(), size=sink.size)


class _OverCap(Exception):
    """An extraction cap was reached before the member that would pass it was written."""


class BoundedTarInfo(tarfile.TarInfo):
    """Refuses, before tarfile reads them into memory, metadata headers over MAX_HEADER_BYTES and
    sparse members (whose extension blocks tarfile reads one after another without a limit)."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> BoundedTarInfo:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _METADATA_TYPES and info.size > MAX_HEADER_BYTES:
            raise tarfile.HeaderError(f"a metadata header of {info.size} bytes exceeds {MAX_HEADER_BYTES}")
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise tarfile.HeaderError(f"{info.name!r} is a sparse member, which a bundle never holds")
        return info


def expanded_cap(bundle_size: int) -> int:
    """The most a bundle of `bundle_size` bytes may declare in all (see the module docstring)."""
    return min(MAX_EXPANDED_BYTES, max(MIN_EXPANDED_BYTES, EXPANSION_RATIO * bundle_size))


def _capped(tar: tarfile.TarFile, max_bytes: int, max_members: int) -> Iterator[tarfile.TarInfo]:
    """The members in order, each one checked against both caps before it is extracted."""
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > max_members:
            raise _OverCap(f"it has more than {max_members} members")
        total += member.size
        if total > max_bytes:
            raise _OverCap(f"its members declare more than {max_bytes} bytes in all")
        yield member


def _bundle_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """tarfile's "data" filter (nothing outside dest, no devices), plus: no links, no absolute names.

    The "data" filter would strip a leading "/" and extract inside dest; a bundle
    that carries one was not made by `make_bundle`, so it is refused instead.
    """
    if member.islnk() or member.issym():
        raise StoreError(f"refusing to extract {member.name!r}: links are not allowed in a bundle")
    if member.name.startswith(("/", "\\")):
        raise StoreError(f"refusing to extract {member.name!r}: absolute paths are not allowed in a bundle")
    return tarfile.data_filter(member, dest_path)


def extract_bundle(bundle: Path, dest: Path, *, max_bytes: int | None = None, max_members: int = MAX_MEMBERS) -> Path:
    """Unpack `bundle` into `dest`, which must not exist yet or be empty.

    Members are unpacked into a temporary sibling and renamed into place, so a
    refused or damaged bundle leaves nothing behind. `max_bytes` caps the sum of
    the members' declared sizes (default: `expanded_cap` of the bundle's size).
    """
    bundle = Path(bundle)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise StoreError(f"cannot extract into {dest}: it exists and is not an empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        with bundle.open("rb") as raw:
            limit = expanded_cap(os.fstat(raw.fileno()).st_size) if max_bytes is None else max_bytes
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=COPY_CHUNK)
            with tarfile.open(fileobj=reader, mode="r|", bufsize=COPY_CHUNK, tarinfo=BoundedTarInfo) as tar:
                tar.extractall(staging, members=_capped(tar, limit, max_members), filter=_bundle_filter)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except (tarfile.FilterError, _OverCap) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"refusing to extract {bundle}: {exc}") from None
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"{bundle} is not a readable bundle: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest
