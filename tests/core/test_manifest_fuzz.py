"""Fuzzing the manifest loader: every mutation of the example manifests ends in a ManifestError or a valid manifest."""

from __future__ import annotations

import copy
import datetime
import random
import tomllib

import tomli_w

from cis490_train.errors import ManifestError
from cis490_train.core.manifest import Manifest
from helpers.fleet import ROOT

EXAMPLES = [ROOT / "manifests" / "demo.toml", ROOT / "manifests" / "fleet.example.toml"]
STRUCTURED = 1200
RAW = 800

VALUES = [
    0, -1, 1, 2**63 - 1, -(2**63), 10**12, 0.5, -3.25, 1e300, float("inf"), float("-inf"), float("nan"),
    "", "x", "gbt", "cuda", "../../etc/passwd", "é" * 3, "a" * 5000, True, False,
    [], [1, 2], ["a", 1], [[1]], {}, {"epochs": 3}, {"x": {"y": 1}},
    datetime.date(2026, 1, 1), datetime.datetime(2026, 1, 1, 12, 0), datetime.time(3, 4),
]
KEYS = ["name", "model", "mode", "hyper", "seed", "priority", "min_vram_gib", "require_cuda", "train_hosts",
        "allowed_hosts", "split_recipe", "n_resamples", "max_attempts", "bogus", "schema_version", "jobs", "hosts", "defaults"]


def _paths(node, prefix=()):
    """Every (container, key) pair in a parsed TOML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield node, k
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield node, i
            yield from _paths(v, prefix + (i,))


def mutate(doc: dict, rng: random.Random) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        places = list(_paths(doc))
        container, key = rng.choice(places)
        action = rng.randrange(6)
        if action == 0 and isinstance(container, dict):
            del container[key]
        elif action == 1:
            container[key] = copy.deepcopy(rng.choice(VALUES))
        elif action == 2 and isinstance(container, dict):
            container[rng.choice(KEYS)] = copy.deepcopy(rng.choice(VALUES))
        elif action == 3 and isinstance(container, list) and container:
            container.append(copy.deepcopy(rng.choice(container)))
        elif action == 4 and isinstance(container.get(key) if isinstance(container, dict) else None, dict):
            container[key] = rng.choice(VALUES[:12])
        else:
            doc.setdefault("jobs", [])
            if isinstance(doc["jobs"], list):
                doc["jobs"].append({rng.choice(KEYS): copy.deepcopy(rng.choice(VALUES)) for _ in range(rng.randint(0, 5))})
    return doc


def raw_mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        action = rng.randrange(5)
        pos = rng.randrange(len(buf) or 1)
        if action == 0 and buf:
            buf[pos] = rng.randrange(256)
        elif action == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif action == 2:
            del buf[pos:pos + rng.randint(1, 64)]
        elif action == 3:
            buf = buf[:pos]
        else:
            line = rng.choice(data.splitlines(keepends=True) or [b"\n"])
            buf[pos:pos] = line
    return bytes(buf)


def check(data: bytes, outcomes: dict[str, int]) -> None:
    try:
        Manifest.from_bytes(data, source="fuzz.toml")
    except ManifestError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert str(exc).startswith("fuzz.toml: ")
        outcomes["rejected"] += 1
    else:
        outcomes["accepted"] += 1


def test_structured_mutations_never_escape_the_manifest_error():
    rng = random.Random(490)
    outcomes = {"accepted": 0, "rejected": 0, "unserialisable": 0}
    docs = [tomllib.loads(p.read_text()) for p in EXAMPLES]
    for i in range(STRUCTURED):
        doc = mutate(docs[i % len(docs)], rng)
        try:
            data = tomli_w.dumps(doc).encode()
        except (TypeError, ValueError):
            outcomes["unserialisable"] += 1
            continue
        check(data, outcomes)
    print(f"\nstructured mutations: {outcomes}")
    assert outcomes["rejected"] + outcomes["accepted"] >= 1000
    assert outcomes["rejected"] > 500 and outcomes["accepted"] > 0


def test_raw_byte_mutations_never_escape_the_manifest_error():
    rng = random.Random(491)
    outcomes = {"accepted": 0, "rejected": 0}
    raws = [p.read_bytes() for p in EXAMPLES]
    for i in range(RAW):
        check(raw_mutate(raws[i % len(raws)], rng), outcomes)
    print(f"\nraw mutations: {outcomes}")
    assert outcomes["rejected"] > RAW // 2
