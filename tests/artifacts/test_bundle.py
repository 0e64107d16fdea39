"""Bundles: deterministic bytes, a faithful round trip, and extraction that stays inside its folder."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from cis490_train.artifacts.bundle import extract_bundle, make_bundle
from cis490_train.errors import StoreError


def _training_output(root: Path) -> Path:
    out = root / "out"
    (out / "reports").mkdir(parents=True)
    (out / "model.pt").write_bytes(os.urandom(300_000))
    (out / "ckpt.json").write_text('{"epoch": 3}\n')
    (out / "reports" / "eval.json").write_text('{"macro_f1": 0.8}\n')
    (out / "empty").mkdir()
    run = out / "run.sh"
    run.write_text("#!/bin/sh\n")
    run.chmod(0o755)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zst_tar(dest: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A hand-made bundle, for members `make_bundle` would never write."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    dest.write_bytes(zstandard.ZstdCompressor(level=3).compress(buf.getvalue()))
    return dest


def _file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_bundle_reports_the_sha256_and_size_of_the_bytes_it_wrote(tmp_path: Path) -> None:
    info = make_bundle(_training_output(tmp_path), tmp_path / "b" / "bundle.tar.zst")
    assert info.path == tmp_path / "b" / "bundle.tar.zst"
    assert info.sha256 == _sha256(info.path)
    assert info.size == info.path.stat().st_size
    assert zstandard.ZstdDecompressor().stream_reader(info.path.open("rb")).read(4) != b""
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["bundle.tar.zst"]


def test_same_content_gives_the_same_bytes_whatever_the_times_and_owners(tmp_path: Path) -> None:
    src = _training_output(tmp_path)
    first = make_bundle(src, tmp_path / "first.tar.zst")
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    for path in [copy, *copy.rglob("*")]:
        os.utime(path, (1_000_000, 1_000_000))
    (copy / "ckpt.json").chmod(0o600)
    second = make_bundle(copy, tmp_path / "second.tar.zst")
    assert second.sha256 == first.sha256
    assert second.path.read_bytes() == first.path.read_bytes()

    (copy / "ckpt.json").write_text('{"epoch": 4}\n')
    assert make_bundle(copy, tmp_path / "third.tar.zst").sha256 != first.sha256


def test_round_trip_restores_names_contents_folders_and_executable_bit(tmp_path: Path) -> None:
    src = _training_output(tmp_path)
    info = make_bundle(src, tmp_path / "bundle.tar.zst")
    dest = extract_bundle(info.path, tmp_path / "restored")
    src_names = sorted(p.relative_to(src).as_posix() for p in src.rglob("*"))
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == src_names
    for name in src_names:
        if (src / name).is_file():
            assert (dest / name).read_bytes() == (src / name).read_bytes(), name
    assert (dest / "empty").is_dir()
    assert (dest / "run.sh").stat().st_mode & stat.S_IXUSR
    assert not (dest / "ckpt.json").stat().st_mode & stat.S_IXUSR


def test_the_report_is_the_first_member_and_the_rest_follow_by_name(tmp_path: Path) -> None:
    src = _training_output(tmp_path)
    (src / "report.json").write_text('{"metrics": {}}\n')
    (src / "reports" / "report.json").write_text("{}\n")
    info = make_bundle(src, tmp_path / "bundle.tar.zst")
    with info.path.open("rb") as raw, tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(raw), mode="r|") as tar:
        names = [m.name for m in tar]
    assert names == [
        "report.json", "ckpt.json", "empty", "model.pt", "reports", "reports/eval.json", "reports/report.json", "run.sh",
    ]


def test_bundle_refuses_a_symlink_and_leaves_no_file(tmp_path: Path) -> None:
    src = _training_output(tmp_path)
    (src / "escape").symlink_to("/etc/passwd")
    with pytest.raises(StoreError, match="symbolic links"):
        make_bundle(src, tmp_path / "bundles" / "bundle.tar.zst")
    assert list((tmp_path / "bundles").iterdir()) == []


def test_bundle_refuses_to_write_inside_the_folder_it_packs(tmp_path: Path) -> None:
    src = _training_output(tmp_path)
    with pytest.raises(StoreError, match="inside the folder"):
        make_bundle(src, src / "bundle.tar.zst")
    assert not (src / "bundle.tar.zst").exists()


@pytest.mark.parametrize(
    "name, reason",
    [("../evil.txt", "outside"), ("a/../../evil.txt", "outside"), ("/tmp/evil.txt", "absolute")],
)
def test_extract_refuses_members_that_escape(tmp_path: Path, name: str, reason: str) -> None:
    bundle = _zst_tar(tmp_path / "bad.tar.zst", [_file_member("ok.txt", b"fine"), _file_member(name, b"pwned")])
    dest = tmp_path / "work" / "dest"
    with pytest.raises(StoreError, match=reason):
        extract_bundle(bundle, dest)
    assert not dest.exists()
    assert not (tmp_path / "work" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_extract_refuses_links_even_inside_dest(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("link")
    link.type = kind
    link.linkname = "ok.txt"
    bundle = _zst_tar(tmp_path / "bad.tar.zst", [_file_member("ok.txt", b"fine"), (link, None)])
    with pytest.raises(StoreError, match="links are not allowed"):
        extract_bundle(bundle, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_extract_refuses_a_non_empty_destination_and_a_damaged_bundle(tmp_path: Path) -> None:
    info = make_bundle(_training_output(tmp_path), tmp_path / "bundle.tar.zst")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an empty directory"):
        extract_bundle(info.path, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]

    damaged = tmp_path / "damaged.tar.zst"
    damaged.write_bytes(info.path.read_bytes()[: info.size // 2])
    with pytest.raises(StoreError, match="not a readable bundle"):
        extract_bundle(damaged, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.tar.zst", "busy", "damaged.tar.zst", "out"]
