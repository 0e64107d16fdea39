"""Bundling and uploading a large checkpoint: tar + zstd speed, and a streamed upload to the real store
against an fsync'd write of the same bytes to the same disk, measured in the same run.

Checkpoint-like data (float32 weights: random mantissas, barely compressible) is written once; the
disk baseline writes the bundle's bytes to a file with one fsync at the end, as the store does.

    python bench/artifacts.py [--gib N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from cis490_train.artifacts.bundle import make_bundle
from cis490_train.artifacts.client import StoreClient
from cis490_train.operator.embedded import StoreServer, child_env, new_token
from report import save

CHUNK = 1 << 20
MB = 1e6


def write_checkpoint(directory: Path, size: int) -> None:
    """Several weight files of float32 noise with a common scale, as a trained network's tensors look."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = 8
    for i in range(parts):
        n = size // parts // 4
        (directory / f"layer{i}.pt").write_bytes((rng.standard_normal(n, dtype=np.float32) * 0.02).tobytes())
    (directory / "ckpt.json").write_text(json.dumps({"model": "bench", "mode": "realistic"}))


def fsync_write(source: Path, target: Path) -> float:
    """Seconds to copy `source` to `target` in 1 MiB writes and fsync it: the disk's honest speed."""
    start = time.perf_counter()
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="checkpoint size in GiB (default 1)")
    parser.add_argument("--quick", action="store_true", help="32 MiB: checks the harness, not the numbers")
    args = parser.parse_args(argv)
    size = 32 << 20 if args.quick else int(args.gib * (1 << 30))
    print(f"{platform.node()}: {os.cpu_count()} cores, python {platform.python_version()}; checkpoint {size / (1 << 20):.0f} MiB")

    with tempfile.TemporaryDirectory(prefix="cis490-bench-", dir=os.environ.get("CIS490_BENCH_DIR")) as tmp:
        tmp = Path(tmp)
        write_checkpoint(tmp / "ckpt", size)
        start = time.perf_counter()
        bundle = make_bundle(tmp / "ckpt", tmp / "bundle.tar.zst")
        bundle_s = time.perf_counter() - start
        disk_s = fsync_write(bundle.path, tmp / "disk-baseline")
        (tmp / "disk-baseline").unlink()

        token = new_token()
        store = StoreServer(tmp / "store", child_env(CIS490_WORKER_TOKEN=token), log=tmp / "store.log").start()
        try:
            proc = psutil.Process(store.proc.pid)
            rss_before = proc.memory_info().rss
            peak = rss_before
            with StoreClient(store.url, token, timeout=600) as client:
                import threading

                done = threading.Event()

                def sample() -> None:
                    nonlocal peak
                    while not done.wait(0.05):
                        peak = max(peak, proc.memory_info().rss)

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                start = time.perf_counter()
                client.upload(bundle.path, bundle.sha256, model="bench", mode="realistic")
                upload_s = time.perf_counter() - start
                done.set()
                sampler.join()
        finally:
            store.stop()

    mbps = lambda seconds: bundle.size / MB / seconds  # noqa: E731
    rows = [
        {"figure": "bundle (tar + zstd level 3, multi-threaded)", "value": f"{size / MB / bundle_s:.0f} MB/s of checkpoint", "target": ">= 400 MB/s", "ok": size / MB / bundle_s >= 400},
        {"figure": "fsync'd write of the bundle (disk baseline)", "value": f"{mbps(disk_s):.0f} MB/s", "target": "yardstick", "ok": None},
        {"figure": "streamed upload to the store", "value": f"{mbps(upload_s):.0f} MB/s ({disk_s / upload_s:.0%} of disk)", "target": ">= 70 % of disk", "ok": disk_s / upload_s >= 0.7},
        {"figure": "store RSS growth during the upload", "value": f"{(peak - rss_before) / (1 << 20):.1f} MiB", "target": "<= 64 MiB", "ok": peak - rss_before <= 64 << 20},
    ]
    print(f"bundle {bundle.size / MB:.0f} MB (ratio {size / bundle.size:.3f})")
    print(f"{'figure':<46}{'measured':<34}target")
    for row in rows:
        mark = "  MISSED" if row["ok"] is False else ""
        print(f"{row['figure']:<46}{row['value']:<34}{row['target']}{mark}")
    if not args.quick:
        save("artifacts", {"bytes": size, "bundle_bytes": bundle.size, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
