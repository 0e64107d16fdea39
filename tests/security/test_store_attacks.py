"""Attacks on the artifact store and on bundles, replayed against a real `store serve` process, the
real `cis490-train evaluate` and the real functions: each must fail harmlessly, in one line, leaving
nothing behind and holding no thread, connection or CPU."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import select
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import zstandard

from cis490_train.artifacts.bundle import MAX_HEADER_BYTES, extract_bundle, make_bundle
from cis490_train.artifacts.client import StoreClient
from cis490_train.artifacts.summary import SCAN_BYTES, _BoundedReader, _ScanLimit, read_report
from cis490_train.operator.embedded import StoreServer, new_token
from cis490_train.errors import ArtifactNotFound, StoreError
from helpers.fleet import wait_for

TOKEN = new_token()
DEADLINE_S = 20.0
JOB = "0123456789abcdef"


@pytest.fixture
def start_store(tmp_path: Path) -> Iterator[Callable[..., StoreServer]]:
    """Real store processes with extra `store serve` options; each must stop cleanly with no traceback logged."""
    started: list[StoreServer] = []

    def start(*args: str) -> StoreServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
        env["CIS490_WORKER_TOKEN"] = TOKEN
        name = f"store{len(started)}"
        server = StoreServer(tmp_path / name, env, log=tmp_path / f"{name}.log", args=args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
        log = server.log.read_text()
        assert server.proc.returncode == 0, log
        assert "Traceback" not in log and TOKEN not in log


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One real trainer run: its output folder (weights, ckpt.json, report.json) and its report."""
    work = tmp_path_factory.mktemp("trained")
    spec = {"job_id": JOB, "name": "g", "model": "gbt", "mode": "oracle", "hyper": {"n_estimators": 20},
            "split_recipe": "host", "train_hosts": ["elliott-thinkpad", "lab-ws1"], "seed": 3, "n_resamples": 300}
    (work / "spec.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "cis490_train.trainer", "--spec", str(work / "spec.json"), "--out",
                    str(work / "out"), "--data", str(dataset), "--threads", "1"], check=True, capture_output=True,
                   timeout=300)
    return work / "out", json.loads((work / "out" / "report.json").read_text())


def _headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "X-Cis490-Model": "gbt", "X-Cis490-Mode": "oracle",
            "X-Cis490-Job": JOB, "X-Cis490-Attempt": "1", "X-Cis490-Host": "attacker", **extra}


def _put(store: StoreServer, data: bytes) -> httpx.Response:
    return httpx.put(f"{store.url}/v1/artifacts/{hashlib.sha256(data).hexdigest()}", content=data,
                     headers=_headers(), timeout=120.0)


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _held(store: StoreServer) -> int:
    """Client connections the store process holds a socket for."""
    return sum(1 for c in psutil.Process(store.proc.pid).net_connections("tcp")
               if c.status != psutil.CONN_LISTEN and c.laddr.port == store.port)


def _closed_without_an_answer(sock: socket.socket) -> bool:
    """True once the peer closes having sent nothing; a peer that never closes fails at the socket timeout."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def _read_to_close(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def _huge_member_bundle(declared: int) -> bytes:
    """A lone tar header declaring `declared` bytes of data that the stream never holds (about 100 bytes)."""
    info = tarfile.TarInfo("model.pt")
    info.size = declared
    return zstandard.ZstdCompressor(level=19).compress(info.tobuf(tarfile.PAX_FORMAT))


def _hand_bundle(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(buf.getvalue()))
    return path


class _Zeros:
    def __init__(self, size: int):
        self.left = size

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def _bomb(path: Path, members: list[tuple[str, int]]) -> Path:
    """Members of zeros, streamed through the compressor: gigabytes in a few dozen kilobytes."""
    with path.open("wb") as raw, zstandard.ZstdCompressor(level=19).stream_writer(raw) as zw:
        with tarfile.open(fileobj=zw, mode="w|") as tar:
            for name, size in members:
                info = tarfile.TarInfo(name)
                info.size = size
                tar.addfile(info, _Zeros(size))
    return path


def _evaluate(bundle: Path, dataset: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "evaluate-tmp"))
    (tmp_path / "evaluate-tmp").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "cis490_train", "evaluate", str(bundle), "--data", str(dataset),
                           "--n-resamples", "50"], env=env, capture_output=True, text=True, timeout=300)


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


# 1. A ~100-byte upload pinned a store thread: tarfile skipped the declared 10^10 bytes block by block,
#    reading b"" after the stream had ended.


def test_a_tiny_upload_declaring_a_huge_member_is_stored_without_a_summary_and_costs_no_cpu(
        start_store: Callable[..., StoreServer], tmp_path: Path) -> None:
    store = start_store()
    src = tmp_path / "honest"
    src.mkdir()
    (src / "model.pt").write_bytes(os.urandom(1 << 20))
    honest = make_bundle(src, tmp_path / "honest.tar.zst")
    with StoreClient(store.url, TOKEN) as client:
        client.upload(honest.path, honest.sha256, model="gbt", mode="oracle")

    cpu_before = _cpu_s(store.proc.pid)
    attacks = [_huge_member_bundle(10**11 + i) for i in range(8)]
    for data in attacks:
        assert len(data) < 200
        response = _put(store, data)
        assert response.status_code == 201, response.text  # a valid sha256: the upload itself is accepted
    spent = _cpu_s(store.proc.pid) - cpu_before
    assert spent < 2.0, f"the store spent {spent:.1f} s of CPU on {len(attacks)} uploads of {len(attacks[0])} bytes"

    with StoreClient(store.url, None) as anonymous:
        for data in attacks:
            record, summary = anonymous.meta(hashlib.sha256(data).hexdigest())
            assert (record.size, summary) == (len(data), None)
        got = anonymous.download(honest.sha256, tmp_path / "down" / "bundle.tar.zst")
    assert got.path.read_bytes() == honest.path.read_bytes()


def test_the_report_scan_stops_at_declared_offsets_and_at_the_end_of_the_stream(tmp_path: Path) -> None:
    huge = tmp_path / "huge.tar.zst"
    huge.write_bytes(_huge_member_bundle(10**12))  # skipping it block by block took about 40 s of CPU
    started = time.process_time()
    assert read_report(huge) is None
    assert time.process_time() - started < 2.0

    reader = _BoundedReader(io.BytesIO(b"abc"), SCAN_BYTES)
    assert reader.read(10) == b"abc"
    with pytest.raises(_ScanLimit):
        reader.read(10)  # an ended stream stops the scan instead of answering b"" for ever

    early = _hand_bundle(tmp_path / "early.tar.zst", [("ckpt.json", b"{}"), ("report.json", b'{"name": "r"}')])
    assert read_report(early) == {"name": "r"}


# 2. Decompression bomb: `evaluate` expanded a bundle of a few dozen kilobytes to 2 GiB on disk.


def test_a_decompression_bomb_is_refused_before_a_byte_of_it_is_written(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.tar.zst", [("ckpt.json", 1000), ("model.pt", 2 << 30)])
    assert bomb.stat().st_size < 200_000
    work = tmp_path / "work"
    work.mkdir()
    written = psutil.Process().io_counters().write_chars
    with pytest.raises(StoreError, match="declare more than 268435456 bytes") as refused:
        extract_bundle(bomb, work / "checkpoint")
    assert psutil.Process().io_counters().write_chars - written < 1 << 20
    assert "\n" not in str(refused.value)
    assert list(work.iterdir()) == []  # the member written before the refusal is gone with its staging folder


def test_evaluate_refuses_a_bomb_in_one_line(tmp_path: Path, dataset: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.tar.zst", [("model.pt", 2 << 30)])
    line = _one_error_line(_evaluate(bomb, dataset, tmp_path))
    assert "refusing to extract" in line and "declare more than" in line
    assert list((tmp_path / "evaluate-tmp").iterdir()) == []


def test_member_count_and_metadata_headers_are_capped(tmp_path: Path) -> None:
    four = _hand_bundle(tmp_path / "four.tar.zst", [(f"f{i}", b"x") for i in range(4)])
    with pytest.raises(StoreError, match="more than 3 members"):
        extract_bundle(four, tmp_path / "refused", max_members=3)
    assert not (tmp_path / "refused").exists()
    assert sorted(p.name for p in extract_bundle(four, tmp_path / "ok", max_members=4).iterdir()) == \
        ["f0", "f1", "f2", "f3"]
    with pytest.raises(StoreError, match="declare more than 3 bytes"):
        extract_bundle(four, tmp_path / "small", max_bytes=3)

    padded = tarfile.TarInfo("model.pt")
    padded.pax_headers = {"comment": "x" * (64 << 20)}  # tarfile would hold 64 MiB of header in memory
    header_bomb = _hand_bundle(tmp_path / "header.tar.zst", [padded])
    with pytest.raises(StoreError, match=f"metadata header of .* bytes exceeds {MAX_HEADER_BYTES}"):
        extract_bundle(header_bomb, tmp_path / "header")
    assert read_report(header_bomb) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["four.tar.zst", "header.tar.zst", "ok"]


# 3. Untrusted pickles and other malformed bundle content: `evaluate` ended in a traceback.


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _torch_pickle(marker: Path) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import torch

        torch.save({"arch": _RunsCode(marker), "state_dict": {}}, path)

    return write


def _plain_weights_without_fields(path: Path) -> None:
    import torch

    torch.save({"x": torch.zeros(2)}, path)


def _booster_for_other_features(n_features: int, n_classes: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import numpy as np
        import xgboost as xgb

        rows = np.random.default_rng(0).random((40, n_features))
        dmat = xgb.DMatrix(rows, label=np.arange(40) % n_classes)
        xgb.train({"objective": "multi:softprob", "num_class": n_classes, "nthread": 1}, dmat, 2).save_model(str(path))

    return write


def _narrower(ckpt: dict) -> Callable[[Path], None]:
    """A booster trained on fewer features than the dataset has: xgboost refuses the wider rows."""
    assert len(ckpt["feature_columns"]) > 2
    return _booster_for_other_features(2, len(ckpt["classes"]))


Case = Callable[[dict, Path], tuple[dict | bytes, dict[str, bytes | Callable[[Path], None]], str]]
# Each case turns the real ckpt.json and a marker path into (ckpt.json, weights files, what the error line says).
CASES: dict[str, Case] = {
    "a torch file whose pickle runs code":
        lambda ckpt, marker: (dict(ckpt, model="mlp"), {"model.pt": _torch_pickle(marker)}, "not plain weights"),
    "a bare pickle that runs code":
        lambda ckpt, marker: (dict(ckpt, model="mlp"), {"model.pt": pickle.dumps(_RunsCode(marker), protocol=4)},
                              "not plain weights"),
    "weights that are no torch file":
        lambda ckpt, marker: (dict(ckpt, model="mlp"), {"model.pt": os.urandom(2000)}, "not plain weights"),
    "plain weights without the model's fields":
        lambda ckpt, marker: (dict(ckpt, model="mlp"), {"model.pt": _plain_weights_without_fields},
                              "cannot be loaded as mlp weights"),
    "gbt weights that are no booster":
        lambda ckpt, marker: (ckpt, {"model.xgb.json": b'{"x": 1}'}, "cannot be loaded as gbt weights"),
    "gbt weights for other features":
        lambda ckpt, marker: (ckpt, {"model.xgb.json": _narrower(ckpt)}, "cannot score this dataset"),
    "ckpt.json that is no object": lambda ckpt, marker: (b"[]", {}, "not a JSON object"),
    "ckpt.json that is no UTF-8 JSON": lambda ckpt, marker: (b"\xff{", {}, "not readable JSON"),
    "ckpt.json without classes":
        lambda ckpt, marker: ({k: v for k, v in ckpt.items() if k != "classes"}, {}, "'classes' is missing"),
    "ckpt.json with a baseline outside the classes":
        lambda ckpt, marker: (dict(ckpt, baseline_class="nope"), {}, "'baseline_class' 'nope' is not one of"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_refuses_untrusted_or_malformed_bundle_content_in_one_line(
        case: str, trained: tuple[Path, dict], dataset: Path, tmp_path: Path) -> None:
    out, _ = trained
    marker = tmp_path / "the-pickle-ran"
    ckpt, files, expected = CASES[case](json.loads((out / "ckpt.json").read_text()), marker)
    src = tmp_path / "bundle-src"
    src.mkdir()
    (src / "ckpt.json").write_bytes(ckpt if isinstance(ckpt, bytes) else json.dumps(ckpt).encode())
    for name, content in files.items():
        if callable(content):
            content(src / name)
        else:
            (src / name).write_bytes(content)
    bundle = make_bundle(src, tmp_path / "bundle.tar.zst")
    line = _one_error_line(_evaluate(bundle.path, dataset, tmp_path))
    assert expected in line
    assert not marker.exists()


def test_evaluate_refuses_what_is_not_a_bundle_in_one_line(tmp_path: Path, dataset: Path) -> None:
    junk = tmp_path / "junk.tar.zst"
    junk.write_bytes(os.urandom(4000))
    assert "is not a readable bundle" in _one_error_line(_evaluate(junk, dataset, tmp_path))


def test_the_real_bundle_still_evaluates(trained: tuple[Path, dict], dataset: Path, tmp_path: Path) -> None:
    out, report = trained
    bundle = make_bundle(out, tmp_path / "bundle.tar.zst")
    run = _evaluate(bundle.path, dataset, tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"{report['n_test']} test windows" in run.stdout


# 4. HTTP hardening.


@pytest.mark.parametrize("header", [b"Content-Length: \xb9", b"Content-Length: 1\xb2",
                                    b"Content-Length: 1\r\nX-Cis490-Attempt: \xb3"])
def test_non_ascii_digits_in_numeric_headers_are_a_400_not_a_500(
        start_store: Callable[..., StoreServer], header: bytes) -> None:
    store = start_store()
    head = "".join(f"{k}: {v}\r\n" for k, v in _headers().items() if k != "X-Cis490-Attempt")
    request = (f"PUT /v1/artifacts/{'cd' * 32} HTTP/1.1\r\nHost: store\r\nConnection: close\r\n{head}").encode()
    with socket.create_connection(("127.0.0.1", store.port), timeout=DEADLINE_S) as sock:
        sock.sendall(request + header + b"\r\n\r\nx")
        reply = _read_to_close(sock)
    status, _, body = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400 "), reply
    assert "ASCII digits" in json.loads(body)["error"]
    assert list((store.root / "tmp").iterdir()) == []


def test_no_answer_names_the_store_root_and_every_answer_says_nosniff(
        start_store: Callable[..., StoreServer], tmp_path: Path) -> None:
    store = start_store()
    unknown = "ab" * 32
    answers = {
        "health": httpx.get(f"{store.url}/v1/health"),
        "unknown artifact": httpx.get(f"{store.url}/v1/artifacts/{unknown}"),
        "unknown meta": httpx.get(f"{store.url}/v1/artifacts/{unknown}/meta"),
        "bad id": httpx.get(f"{store.url}/v1/artifacts/..%2Fetc"),
        "no endpoint": httpx.get(f"{store.url}/v2/anything"),
        "no token": httpx.put(f"{store.url}/v1/artifacts/{unknown}", content=b"x"),
        "listing": httpx.get(f"{store.url}/v1/artifacts"),
        "results page": httpx.get(f"{store.url}/results"),
        "redirect": httpx.get(f"{store.url}/"),
    }
    assert answers["health"].json() == {"ok": True, "artifacts": 0}
    assert answers["unknown artifact"].json()["error"] == f"no artifact {unknown} in the store"
    assert [answers[k].status_code for k in ("unknown artifact", "unknown meta", "bad id", "no endpoint")] == \
        [404, 404, 400, 404]
    for name, answer in answers.items():
        assert str(tmp_path) not in answer.text, name
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", name


def test_a_download_is_an_attachment_named_by_its_id(start_store: Callable[..., StoreServer],
                                                    tmp_path: Path) -> None:
    store = start_store()
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.pt").write_bytes(b"<html><script>alert(1)</script>")
    bundle = make_bundle(src, tmp_path / "bundle.tar.zst")
    with StoreClient(store.url, TOKEN) as client:
        client.upload(bundle.path, bundle.sha256, model="gbt", mode="oracle")
    response = httpx.get(f"{store.url}/v1/artifacts/{bundle.sha256}")
    assert response.status_code == 200 and response.content == bundle.path.read_bytes()
    assert response.headers["Content-Disposition"] == f'attachment; filename="{bundle.sha256}.tar.zst"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Type"] == "application/zstd"


def test_a_client_that_never_finishes_its_request_is_dropped_after_the_idle_timeout(
        start_store: Callable[..., StoreServer], tmp_path: Path) -> None:
    store = start_store("--idle-timeout", "1")
    for partial in (b"GET /v1/hea", b"GET /v1/health HTTP/1.1\r\nHost: store\r\n"):
        with socket.create_connection(("127.0.0.1", store.port), timeout=DEADLINE_S) as sock:
            sock.sendall(partial)
            assert _closed_without_an_answer(sock), partial
    wait_for(lambda: _held(store) == 0, DEADLINE_S, "the store to let go of the dropped connections")

    # An accepted upload that takes longer than the idle timeout is not cut: its body gets time by its length.
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.pt").write_bytes(os.urandom(1 << 20))
    bundle = make_bundle(src, tmp_path / "bundle.tar.zst")
    data = bundle.path.read_bytes()
    head = "".join(f"{k}: {v}\r\n" for k, v in _headers().items())
    request = (f"PUT /v1/artifacts/{bundle.sha256} HTTP/1.1\r\nHost: store\r\nConnection: close\r\n{head}"
               f"Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", store.port), timeout=DEADLINE_S) as sock:
        sock.sendall(request + data[: len(data) // 2])
        wait_for(lambda: [p.stat().st_size for p in (store.root / "tmp").iterdir()] == [len(data) // 2],
                 DEADLINE_S, "the first half of the upload to reach tmp/")
        quiet_until = time.monotonic() + 3.0  # three idle timeouts without a byte from the client
        while (left := quiet_until - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            assert not readable, "the store answered or closed an upload mid-body"
        sock.sendall(data[len(data) // 2:])
        reply = _read_to_close(sock)
    assert reply.startswith(b"HTTP/1.1 201 "), reply


def test_connections_beyond_the_limit_are_closed_while_a_download_goes_on(
        start_store: Callable[..., StoreServer], tmp_path: Path) -> None:
    store = start_store("--max-connections", "3")
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.pt").write_bytes(os.urandom(32 << 20))  # more than the socket buffers hold
    bundle = make_bundle(src, tmp_path / "bundle.tar.zst")
    with StoreClient(store.url, TOKEN) as client:
        client.upload(bundle.path, bundle.sha256, model="gbt", mode="oracle")
    wait_for(lambda: _held(store) == 0, DEADLINE_S, "the store to let go of the upload's connection")

    with httpx.Client(timeout=DEADLINE_S) as downloader, \
            downloader.stream("GET", f"{store.url}/v1/artifacts/{bundle.sha256}") as download:
        chunks = download.iter_bytes()
        digest = hashlib.sha256(next(chunks))
        wait_for(lambda: _held(store) == 1, DEADLINE_S, "the download's connection")
        idle = [socket.create_connection(("127.0.0.1", store.port), timeout=DEADLINE_S) for _ in range(2)]
        wait_for(lambda: _held(store) == 3, DEADLINE_S, "three open connections")
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", store.port), timeout=DEADLINE_S) as extra:
                extra.sendall(b"GET /v1/health HTTP/1.1\r\nHost: store\r\n\r\n")
                assert _closed_without_an_answer(extra)
        assert _held(store) == 3
        for chunk in chunks:
            digest.update(chunk)
        assert digest.hexdigest() == bundle.sha256
        for sock in idle:
            sock.close()
    wait_for(lambda: _held(store) == 0, DEADLINE_S, "the store to let go of the closed connections")
    assert httpx.get(f"{store.url}/v1/health", timeout=DEADLINE_S).json()["artifacts"] == 1
    assert "closing new ones until some close" in store.log.read_text()


# 5. The coordinator's read endpoint: a verified bundle's row and summary, without downloading it.


def test_meta_gives_the_row_and_summary_of_a_real_bundle_without_a_token(
        start_store: Callable[..., StoreServer], trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, report = trained
    store = start_store()
    bundle = make_bundle(out, tmp_path / "bundle.tar.zst")
    with StoreClient(store.url, TOKEN) as client:
        client.upload(bundle.path, bundle.sha256, model="gbt", mode="oracle", job_id=JOB, attempt=2, host="host-a")
    with StoreClient(store.url, None) as anonymous:
        record, summary = anonymous.meta(bundle.sha256)
        assert [record] == anonymous.list()
        with pytest.raises(ArtifactNotFound, match="no artifact"):
            anonymous.meta("ab" * 32)
        with pytest.raises(StoreError, match="artifact id"):
            anonymous.meta("../etc/passwd")
    assert (record.artifact_id, record.job_id, record.attempt, record.host, record.size) == \
        (bundle.sha256, JOB, 2, "host-a", bundle.size)
    assert summary is not None
    assert (summary.n_train, summary.n_val, summary.n_test) == (report["n_train"], report["n_val"], report["n_test"])
    assert summary.n_val > 0
    assert summary.metric("macro_f1").value == report["metrics"]["macro_f1"]["value"]

    raw = httpx.get(f"{store.url}/v1/artifacts/{bundle.sha256}/meta")
    assert raw.status_code == 200
    assert raw.json() == {"record": record.to_json(), "summary": summary.to_json()}
    assert httpx.get(f"{store.url}/v1/artifacts/{bundle.sha256.upper()}/meta").status_code == 400
