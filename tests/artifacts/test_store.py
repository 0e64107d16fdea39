"""The artifact store, end to end: a real `cis490-train store serve` process spoken to over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cis490_train.artifacts.bundle import make_bundle
from cis490_train.artifacts.client import StoreClient
from cis490_train.artifacts.records import ArtifactMeta
from cis490_train.artifacts.store import ArtifactStore
from cis490_train.errors import ArtifactNotFound, DigestMismatch, StoreAuthError, StoreError

TOKEN = "test-token-" + secrets.token_hex(8)
DEADLINE_S = 15.0
JOB = "0123456789abcdef"


@dataclass(frozen=True)
class RunningStore:
    url: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port


def _wait_for(what: str, check: Callable[[], object], timeout: float = DEADLINE_S) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def _start(root: Path, log: Path, max_bytes: int | None = None) -> RunningStore:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    env["CIS490_WORKER_TOKEN"] = TOKEN
    if max_bytes is not None:
        env["CIS490_STORE_MAX_BYTES"] = str(max_bytes)
    cmd = [sys.executable, "-m", "cis490_train", "store", "serve", "--root", str(root), "--host", "127.0.0.1",
           "--port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

    def listening() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"store exited with {proc.returncode}: {log.read_text()}")
        found = re.search(r"listening on (http://\S+)", log.read_text())
        return found.group(1) if found else None

    url = str(_wait_for("the store's listening line", listening))

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/v1/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    _wait_for("/v1/health", healthy)
    return RunningStore(url=url, root=root, proc=proc, log=log)


def _stop(store: RunningStore) -> None:
    """SIGTERM must end the store cleanly (exit 0) and the token must never reach its log."""
    if store.proc.poll() is None:
        store.proc.send_signal(signal.SIGTERM)
    try:
        rc = store.proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        store.proc.kill()
        store.proc.wait()
        raise AssertionError("store did not stop within the deadline after SIGTERM") from None
    log = store.log.read_text()
    assert rc == 0, log
    assert TOKEN not in log


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunningStore]:
    running = _start(tmp_path / "store", tmp_path / "store.log")
    yield running
    _stop(running)


@pytest.fixture(scope="module")
def rejecting_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    """One store for the many requests that must all be refused: it must stay empty."""
    base = tmp_path_factory.mktemp("rejecting")
    running = _start(base / "store", base / "store.log")
    yield running
    _stop(running)


@pytest.fixture
def client(store: RunningStore) -> Iterator[StoreClient]:
    with StoreClient(store.url, TOKEN, timeout=10.0) as c:
        yield c


@dataclass(frozen=True)
class Bundle:
    path: Path
    sha256: str
    data: bytes


def _bundle(tmp_path: Path, name: str = "b", payload_bytes: int = 200_000) -> Bundle:
    src = tmp_path / f"{name}-src"
    src.mkdir()
    (src / "model.pt").write_bytes(os.urandom(payload_bytes))
    (src / "ckpt.json").write_text(json.dumps({"name": name}))
    info = make_bundle(src, tmp_path / f"{name}.tar.zst")
    return Bundle(path=info.path, sha256=info.sha256, data=info.path.read_bytes())


def _headers(**overrides: str) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "X-Cis490-Model": "gbt",
        "X-Cis490-Mode": "realistic",
        "X-Cis490-Job": JOB,
        "X-Cis490-Attempt": "1",
        "X-Cis490-Host": "host-a",
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


def _put(store: RunningStore, artifact_id: str, data: bytes, **overrides: str) -> httpx.Response:
    return httpx.put(f"{store.url}/v1/artifacts/{artifact_id}", content=data, headers=_headers(**overrides),
                     timeout=10.0)


def _index_rows(root: Path) -> list[dict[str, object]]:
    index = root / "index.jsonl"
    if not index.exists():
        return []
    return [json.loads(line) for line in index.read_text().splitlines() if line.strip()]


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _assert_nothing_stored(root: Path) -> None:
    assert _files(root / "models") == []
    assert _files(root / "tmp") == []
    assert _index_rows(root) == []


def _layout_path(root: Path, artifact_id: str, model: str = "gbt", mode: str = "realistic") -> Path:
    return root / "models" / f"{model}_{mode}" / artifact_id / "bundle.tar.zst"


def test_upload_stores_the_bundle_in_the_layout_with_one_index_row(store: RunningStore, tmp_path: Path) -> None:
    b = _bundle(tmp_path)
    response = _put(store, b.sha256, b.data)
    assert response.status_code == 201, response.text
    rel = f"models/gbt_realistic/{b.sha256}/bundle.tar.zst"
    assert response.json() == {"artifact_id": b.sha256, "size": len(b.data), "path": rel, "deduplicated": False}
    stored = _layout_path(store.root, b.sha256)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == b.sha256
    assert _files(store.root / "models") == [stored]
    assert _files(store.root / "tmp") == []
    [row] = _index_rows(store.root)
    assert {k: v for k, v in row.items() if k != "created_at"} == {
        "artifact_id": b.sha256, "model": "gbt", "mode": "realistic", "job_id": JOB, "attempt": 1,
        "host": "host-a", "size": len(b.data), "path": rel,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(row["created_at"]))


def test_the_same_upload_again_is_deduplicated(store: RunningStore, client: StoreClient, tmp_path: Path) -> None:
    b = _bundle(tmp_path)
    first = client.upload(b.path, b.sha256, model="gbt", mode="realistic", job_id=JOB, attempt=1, host="host-a")
    assert not first.deduplicated
    again = _put(store, b.sha256, b.data, **{"X-Cis490-Attempt": "2", "X-Cis490-Host": "host-b"})
    assert again.status_code == 200, again.text
    assert again.json()["deduplicated"] is True
    assert again.json()["path"] == first.path
    assert _files(store.root / "models") == [_layout_path(store.root, b.sha256)]
    [row] = _index_rows(store.root)
    assert (row["attempt"], row["host"]) == (1, "host-a")


def test_concurrent_identical_uploads_end_as_one_file_and_one_row(store: RunningStore, tmp_path: Path) -> None:
    b = _bundle(tmp_path, payload_bytes=4 << 20)
    n = 6
    barrier = threading.Barrier(n)
    results: list[bool] = []
    errors: list[BaseException] = []

    def upload(i: int) -> None:
        try:
            with StoreClient(store.url, TOKEN, timeout=20.0) as c:
                barrier.wait(timeout=DEADLINE_S)
                r = c.upload(b.path, b.sha256, model="gbt", mode="realistic", job_id=JOB, attempt=i, host=f"h{i}")
            results.append(r.deduplicated)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE_S)
    assert errors == []
    assert sorted(results) == [False] + [True] * (n - 1)
    assert _files(store.root / "models") == [_layout_path(store.root, b.sha256)]
    assert _files(store.root / "tmp") == []
    assert len(_index_rows(store.root)) == 1


def test_digest_mismatch_is_refused_and_leaves_nothing(store: RunningStore, client: StoreClient,
                                                       tmp_path: Path) -> None:
    b = _bundle(tmp_path)
    other = _bundle(tmp_path, name="other")
    response = _put(store, other.sha256, b.data)
    assert response.status_code == 422
    assert other.sha256 in response.json()["error"]
    with pytest.raises(DigestMismatch):
        client.upload(b.path, other.sha256, model="gbt", mode="realistic")
    _assert_nothing_stored(store.root)


def test_truncated_body_leaves_nothing(store: RunningStore, tmp_path: Path) -> None:
    b = _bundle(tmp_path, payload_bytes=1 << 20)
    sent = b.data[: 256 << 10]
    head = "".join(f"{k}: {v}\r\n" for k, v in _headers().items())
    request = (f"PUT /v1/artifacts/{b.sha256} HTTP/1.1\r\nHost: store\r\n{head}"
               f"Content-Length: {len(b.data)}\r\n\r\n").encode()
    with socket.create_connection(store.address, timeout=DEADLINE_S) as sock:
        sock.sendall(request + sent)

        def partial_on_disk() -> bool:
            return [p.stat().st_size for p in _files(store.root / "tmp")] == [len(sent)]

        _wait_for("the partial upload to reach tmp/", partial_on_disk)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert not reply.startswith(b"HTTP/1.1 2")
    _wait_for("tmp/ to be emptied", lambda: _files(store.root / "tmp") == [])
    _assert_nothing_stored(store.root)
    assert httpx.get(f"{store.url}/v1/health").json()["artifacts"] == 0


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"])
def test_missing_or_wrong_token_is_401_and_writes_nothing(rejecting_store: RunningStore, tmp_path: Path,
                                                          authorization: str | None) -> None:
    b = _bundle(tmp_path)
    response = _put(rejecting_store, b.sha256, b.data, Authorization=authorization)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    _assert_nothing_stored(rejecting_store.root)


def test_client_maps_a_refused_token_even_mid_way_through_a_large_body(rejecting_store: RunningStore,
                                                                       tmp_path: Path) -> None:
    b = _bundle(tmp_path, payload_bytes=16 << 20)
    with StoreClient(rejecting_store.url, "not-the-token", timeout=10.0) as c:
        with pytest.raises(StoreAuthError, match="refused the worker token"):
            c.upload(b.path, b.sha256, model="gbt", mode="realistic")
    _assert_nothing_stored(rejecting_store.root)


@pytest.mark.parametrize(
    "artifact_id, overrides",
    [
        ("..%2F..%2F..%2Fetc%2Fpasswd", {}),
        ("%2e%2e", {}),
        ("AB" * 32, {}),
        ("ab" * 31, {}),
        ("ab" * 33, {}),
        (None, {"X-Cis490-Model": "../../evil"}),
        (None, {"X-Cis490-Model": "GBT"}),
        (None, {"X-Cis490-Model": "m" * 65}),
        (None, {"X-Cis490-Model": None}),
        (None, {"X-Cis490-Mode": "real/istic"}),
        (None, {"X-Cis490-Mode": ""}),
        (None, {"X-Cis490-Job": "../0123456789ab"}),
        (None, {"X-Cis490-Job": "0123456789ABCDEF"}),
        (None, {"X-Cis490-Attempt": "-1"}),
        (None, {"X-Cis490-Attempt": "one"}),
        (None, {"X-Cis490-Host": "a b"}),
    ],
)
def test_bad_names_are_400_and_write_nothing(rejecting_store: RunningStore, tmp_path: Path,
                                             artifact_id: str | None, overrides: dict[str, str]) -> None:
    b = _bundle(tmp_path)
    response = _put(rejecting_store, artifact_id or b.sha256, b.data, **overrides)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    _assert_nothing_stored(rejecting_store.root)
    assert not (rejecting_store.root.parent / "evil").exists()


def test_client_refuses_bad_names_before_sending(rejecting_store: RunningStore, tmp_path: Path) -> None:
    b = _bundle(tmp_path)
    with StoreClient(rejecting_store.url, TOKEN) as c:
        with pytest.raises(StoreError, match="model"):
            c.upload(b.path, b.sha256, model="../x", mode="realistic")
        with pytest.raises(StoreError, match="artifact id"):
            c.upload(b.path, b.sha256.upper(), model="gbt", mode="realistic")
    _assert_nothing_stored(rejecting_store.root)


def test_uploads_over_the_size_limit_are_413_and_leave_nothing(tmp_path: Path) -> None:
    limit = 50_000
    running = _start(tmp_path / "store", tmp_path / "store.log", max_bytes=limit)
    try:
        big = _bundle(tmp_path, name="big", payload_bytes=200_000)
        assert len(big.data) > limit
        response = _put(running, big.sha256, big.data)
        assert response.status_code == 413
        with StoreClient(running.url, TOKEN) as c, pytest.raises(StoreError, match="413"):
            c.upload(big.path, big.sha256, model="gbt", mode="realistic")
        _assert_nothing_stored(running.root)

        exact = os.urandom(limit)
        exact_id = hashlib.sha256(exact).hexdigest()
        assert _put(running, exact_id, exact).status_code == 201
        assert _layout_path(running.root, exact_id).stat().st_size == limit
    finally:
        _stop(running)


def test_download_returns_the_same_bytes_verified(store: RunningStore, client: StoreClient, tmp_path: Path) -> None:
    b = _bundle(tmp_path, payload_bytes=3 << 20)
    client.upload(b.path, b.sha256, model="cnn", mode="oracle", job_id=JOB, attempt=2, host="h")
    raw = httpx.get(f"{store.url}/v1/artifacts/{b.sha256}")
    assert raw.status_code == 200
    assert raw.headers["X-Cis490-Sha256"] == b.sha256
    assert int(raw.headers["Content-Length"]) == len(b.data)
    got = client.download(b.sha256, tmp_path / "down" / "bundle.tar.zst")
    assert got.path.read_bytes() == b.data
    assert (got.sha256, got.size) == (b.sha256, len(b.data))
    assert [p.name for p in (tmp_path / "down").iterdir()] == ["bundle.tar.zst"]


def test_download_of_an_unknown_artifact_is_404_and_creates_nothing(store: RunningStore, client: StoreClient,
                                                                    tmp_path: Path) -> None:
    unknown = "ab" * 32
    assert httpx.get(f"{store.url}/v1/artifacts/{unknown}").status_code == 404
    with pytest.raises(ArtifactNotFound):
        client.download(unknown, tmp_path / "down" / "bundle.tar.zst")
    assert list((tmp_path / "down").iterdir()) == []


def test_download_refuses_bytes_that_do_not_match_the_id(store: RunningStore, client: StoreClient,
                                                         tmp_path: Path) -> None:
    b = _bundle(tmp_path)
    client.upload(b.path, b.sha256, model="gbt", mode="realistic")
    stored = _layout_path(store.root, b.sha256)
    stored.write_bytes(b"X" + b.data[1:])
    dest = tmp_path / "down" / "bundle.tar.zst"
    with pytest.raises(DigestMismatch):
        client.download(b.sha256, dest)
    assert list(dest.parent.iterdir()) == []


def test_health_and_listing(store: RunningStore, client: StoreClient, tmp_path: Path) -> None:
    assert client.health() == {"ok": True, "artifacts": 0}
    a = _bundle(tmp_path, name="a")
    b = _bundle(tmp_path, name="b")
    client.upload(a.path, a.sha256, model="gbt", mode="realistic")
    client.upload(b.path, b.sha256, model="lstm", mode="oracle")
    assert client.health()["artifacts"] == 2
    assert {r.artifact_id for r in client.list()} == {a.sha256, b.sha256}
    assert [r.artifact_id for r in client.list(model="lstm")] == [b.sha256]
    assert client.list(model="knn") == []
    assert httpx.get(f"{store.url}/v1/artifacts", params={"model": "../x"}).status_code == 400


def test_client_reports_an_unreachable_store_with_its_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with StoreClient(url, TOKEN, timeout=2.0) as c, pytest.raises(StoreError, match=re.escape(url)):
        c.health()


def test_upload_body_is_streamed_not_buffered(store: RunningStore, client: StoreClient, tmp_path: Path) -> None:
    status = Path(f"/proc/{store.proc.pid}/status")
    if not status.exists():
        pytest.skip("needs /proc to read the store's peak memory")

    def peak_rss_kib() -> int:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read_text()).group(1))

    payload = tmp_path / "big.bin"
    with payload.open("wb") as f:
        for _ in range(96):
            f.write(os.urandom(1 << 20))
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    before = peak_rss_kib()
    client.upload(payload, digest, model="gbt", mode="realistic")
    growth_mib = (peak_rss_kib() - before) / 1024
    assert growth_mib < 32, f"store peak memory grew {growth_mib:.0f} MiB for a 96 MiB upload"
    assert _layout_path(store.root, digest).stat().st_size == 96 << 20


def test_stale_temp_files_are_removed_at_start_and_a_second_store_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "tmp").mkdir(parents=True)
    stale = root / "tmp" / f"{'ab' * 32}.x1y2.part"
    stale.write_bytes(b"half an upload")
    running = _start(root, tmp_path / "store.log")
    try:
        assert not stale.exists()
        env = {**os.environ, "CIS490_WORKER_TOKEN": TOKEN}
        second = subprocess.run(
            [sys.executable, "-m", "cis490_train", "store", "serve", "--root", str(root), "--port", "0"],
            env=env, capture_output=True, text=True, timeout=DEADLINE_S,
        )
        assert second.returncode != 0
        assert "already serving" in second.stderr
    finally:
        _stop(running)


def test_store_abort_and_mismatch_leave_nothing_and_commit_is_idempotent(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    digest = hashlib.sha256(data).hexdigest()
    meta = ArtifactMeta(model="mlp", mode="realistic", job_id=JOB, attempt=1, host="h")
    with ArtifactStore(tmp_path / "s") as s:
        with s.begin_upload(digest, meta) as up:
            up.write(data[:1000])
            assert len(_files(s.tmp_dir)) == 1
        _assert_nothing_stored(s.root)

        up = s.begin_upload("cd" * 32, meta)
        up.write(data)
        with pytest.raises(DigestMismatch):
            up.commit()
        _assert_nothing_stored(s.root)

        for expect_dedup in (False, True):
            up = s.begin_upload(digest, meta)
            up.write(data)
            assert up.commit().deduplicated is expect_dedup
        assert s.lookup(digest).size == len(data)
        assert s.bundle_path(s.lookup(digest)).read_bytes() == data
        assert len(_index_rows(s.root)) == 1
        with pytest.raises(ArtifactNotFound):
            s.lookup("ef" * 32)
        with pytest.raises(StoreError):
            s.lookup("../x")


def test_store_recovers_an_index_with_a_torn_last_row(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    digest = hashlib.sha256(data).hexdigest()
    meta = ArtifactMeta(model="knn", mode="oracle")
    with ArtifactStore(tmp_path / "s") as s:
        with s.begin_upload(digest, meta) as up:
            up.write(data)
            up.commit()
    index = tmp_path / "s" / "index.jsonl"
    index.write_bytes(index.read_bytes() + b'{"artifact_id": "torn')
    other = os.urandom(10_000)
    other_id = hashlib.sha256(other).hexdigest()
    with ArtifactStore(tmp_path / "s") as s:
        assert [r.artifact_id for r in s.list()] == [digest]
        with s.begin_upload(other_id, meta) as up:
            up.write(other)
            up.commit()
        assert [r.artifact_id for r in s.list()] == [digest, other_id]
    with ArtifactStore(tmp_path / "s") as s:
        assert [r.artifact_id for r in s.list(mode="oracle")] == [digest, other_id]


def _two_sharing_a_prefix(length: int = 6) -> tuple[bytes, bytes]:
    """Two bodies whose sha256 start alike: a birthday search over a few thousand, the same every run."""
    seen: dict[str, bytes] = {}
    for i in range(100_000):
        body = f"body {i}".encode()
        prefix = hashlib.sha256(body).hexdigest()[:length]
        if prefix in seen:
            return seen[prefix], body
        seen[prefix] = body
    raise AssertionError("no two bodies share a prefix")


def test_resolve_names_one_artifact_by_a_unique_prefix_and_refuses_the_rest(store: RunningStore, client: StoreClient) -> None:
    from cis490_train.errors import AmbiguousArtifact

    first, second = _two_sharing_a_prefix()
    ids = [hashlib.sha256(body).hexdigest() for body in (first, second)]
    for artifact_id, body in zip(ids, (first, second)):
        assert _put(store, artifact_id, body).status_code == 201
    assert ids[0][:6] == ids[1][:6] and ids[0] != ids[1]
    unique = next(n for n in range(7, 64) if ids[0][:n] != ids[1][:n])
    assert client.resolve(ids[0][:unique]) == ids[0]
    assert client.resolve(ids[1][:unique].upper()) == ids[1]
    assert client.resolve("f" * 64) == "f" * 64  # a full id is used as it is; the download says whether it exists
    with pytest.raises(AmbiguousArtifact, match="names more than one artifact in the store"):
        client.resolve(ids[0][:6])
    missing = next(c for c in "0123456789abcdef" if not any(i.startswith(ids[0][:5] + c) for i in ids))
    with pytest.raises(ArtifactNotFound, match="names no artifact in the store") as raised:
        client.resolve(ids[0][:5] + missing)
    assert not isinstance(raised.value, AmbiguousArtifact)
    with pytest.raises(ArtifactNotFound, match="unique prefix of 6\\+ characters"):
        client.resolve(ids[0][:5])
