"""The training manifest: `schema_version = 1`, `[defaults]`, `[hosts.NAME]`, `[[jobs]]`.

The format and the job id formula are the earlier system's, bit for bit, so
existing manifests, job ids and artifact indexes carry over. Loading collects
every problem of a manifest before raising, so one edit fixes them all.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import hyper as hyperparams
from ..errors import ManifestError
from .specs import MODES, SPLIT_RECIPES, HostSpec, JobSpec

SCHEMA_VERSION = 1
_BIG = 10**9
# Names (of the manifest, its jobs and hosts) and descriptions end up in terminals and tables.
MAX_NAME = 128
MAX_DESCRIPTION = 512
# A real manifest nests five levels (document, jobs, job, hyper, a list); TOML allows any depth.
MAX_DEPTH = 32
_TOO_DEEP = f"nested too deeply: tables and arrays may nest at most {MAX_DEPTH} levels"

@dataclass(frozen=True)
class Manifest:
    schema_version: int
    name: str
    defaults: dict[str, Any]
    hosts: dict[str, HostSpec]
    jobs: tuple[JobSpec, ...]
    source: str = "<manifest>"

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ManifestError(str(path), [f"manifest not found at {path}"]) from None
        except IsADirectoryError:
            raise ManifestError(str(path), [f"{path} is a directory, not a manifest file"]) from None
        except OSError as exc:
            raise ManifestError(str(path), [f"cannot read {path}: {exc.strerror}"]) from None
        return cls.from_bytes(data, source=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<manifest>") -> Manifest:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(source, [f"invalid TOML: not UTF-8 text (byte {exc.start})"]) from None
        return cls.from_toml(text, source=source)

    @classmethod
    def from_toml(cls, text: str, source: str = "<manifest>") -> Manifest:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(source, [f"invalid TOML: {exc}"]) from None
        except RecursionError:  # tomllib parses nested arrays and inline tables recursively
            raise ManifestError(source, [_TOO_DEEP]) from None
        return cls.from_dict(raw, source=source)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<manifest>") -> Manifest:
        if _nests_deeper(raw, MAX_DEPTH):
            raise ManifestError(source, [_TOO_DEEP])
        problems: list[str] = []
        _unknown_keys(raw, _TOP_KEYS, "top level", problems)

        version = raw.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            problems.append(f"schema_version must be {SCHEMA_VERSION}, got {version!r}")

        name = raw.get("name", "training-fleet")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"name must be a non-empty string, got {name!r}")
            name = "training-fleet"
        else:
            _check_text(name, "name", MAX_NAME, "top level", problems)

        defaults = raw.get("defaults", {})
        if not isinstance(defaults, dict):
            problems.append("[defaults] must be a table")
            defaults = {}
        defaults = _check_defaults(defaults, problems)

        hosts = _hosts(raw.get("hosts", {}), problems)

        jobs_raw = raw.get("jobs", [])
        if not isinstance(jobs_raw, list) or (jobs_raw and not all(isinstance(j, dict) for j in jobs_raw)):
            problems.append("jobs must be an array of tables ([[jobs]])")
            jobs_raw = []
        if not jobs_raw:
            problems.append("manifest has no [[jobs]] entries")

        jobs: list[JobSpec] = []
        by_id: dict[str, str] = {}
        by_name: dict[str, int] = {}
        for index, table in enumerate(jobs_raw):
            label = _job_label(table, index)
            spec = _job_from_table(table, defaults, label, problems)
            if spec is None:
                continue
            if spec.name in by_name:
                problems.append(f"{label}: name {spec.name!r} is already used by jobs[{by_name[spec.name]}]; job names must be unique")
            by_name.setdefault(spec.name, index)
            if spec.job_id in by_id:
                problems.append(
                    f"{label} duplicates job {by_id[spec.job_id]!r} by content "
                    "(same model, mode, hyper, split_recipe, train_hosts and seed); disambiguate via hyper or seed"
                )
                continue
            by_id[spec.job_id] = spec.name
            jobs.append(spec)

        if problems:
            raise ManifestError(source, problems)
        return cls(
            schema_version=SCHEMA_VERSION,
            name=name,
            defaults=defaults,
            hosts=hosts,
            jobs=tuple(jobs),
            source=source,
        )

    def job(self, key: str) -> JobSpec:
        for spec in self.jobs:
            if key in (spec.name, spec.job_id):
                return spec
        raise KeyError(key)


_TOP_KEYS = ("schema_version", "name", "defaults", "hosts", "jobs")
_HOST_KEYS = ("description", "priority", "allow_jobs", "deny_jobs")
_JOB_KEYS = tuple(JobSpec.__dataclass_fields__)
# The keys [defaults] may set: the earlier system's, plus retries, run-time limit and CUDA grace.
_DEFAULTABLE = (
    "split_recipe",
    "min_ram_gib",
    "min_cores",
    "train_hosts",
    "seed",
    "n_resamples",
    "max_attempts",
    "retry_on_error",
    "max_runtime_s",
    "prefer_cuda_grace_s",
)


def _job_label(table: Any, index: int) -> str:
    name = table.get("name") if isinstance(table, dict) else None
    return f"job {_short(name)!r} (jobs[{index}])" if isinstance(name, str) and name else f"jobs[{index}]"


def _short(name: str) -> str:
    """A name as problems quote it (with repr, which escapes control characters): cut when too long."""
    return name if len(name) <= MAX_NAME else name[:40] + "..."


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether tables and arrays nest deeper than `limit` levels, found without recursing."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _check_text(value: str, what: str, limit: int, where: str, problems: list[str]) -> None:
    """A string that is shown in terminals: printable (no control, format or separator characters,
    which could move the cursor or hide text) and at most `limit` characters."""
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        problems.append(f"{where}: {what} holds the non-printable character {bad!r} at position {value.index(bad)}; use printable text")
    elif len(value) > limit:
        problems.append(f"{where}: {what} is {len(value)} characters long; at most {limit} are allowed")


def _unknown_keys(table: dict[str, Any], valid: tuple[str, ...], where: str, problems: list[str]) -> None:
    for key in table:
        if key in valid:
            continue
        hint = difflib.get_close_matches(str(key), valid, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(f"{where}: unknown key {key!r}{did}; valid keys: {', '.join(valid)}")


def _choice(value: Any, valid: tuple[str, ...], what: str, where: str, problems: list[str]) -> bool:
    if isinstance(value, str) and value in valid:
        return True
    hint = difflib.get_close_matches(value, valid, n=1) if isinstance(value, str) else []
    did = f" (did you mean {hint[0]!r}?)" if hint else ""
    problems.append(f"{where}: unknown {what} {value!r}{did}; valid: {', '.join(valid)}")
    return False


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _str_list(value: Any, what: str, where: str, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: {what} must be a list of non-empty strings, got {value!r}")
        return None
    return tuple(value)


def _check_field(key: str, value: Any, where: str, problems: list[str]) -> bool:
    """Check one job field's type and range; report and return False when it is bad."""
    before = len(problems)
    if key in ("require_cuda", "prefer_cuda", "retry_on_error"):
        if not isinstance(value, bool):
            problems.append(f"{where}: {key} must be true or false, got {value!r}")
    elif key in ("min_vram_gib", "min_ram_gib"):
        if not _is_number(value) or not 0 <= value <= 1_000_000:
            problems.append(f"{where}: {key} must be a number from 0 to 1000000 (GiB), got {value!r}")
    elif key in ("max_runtime_s", "prefer_cuda_grace_s"):
        if not _is_number(value) or not 0 <= value <= 10**8:
            problems.append(f"{where}: {key} must be a number of seconds from 0 to 100000000, got {value!r}")
    elif key == "min_cores":
        if not _is_int(value) or not 1 <= value <= 100_000:
            problems.append(f"{where}: min_cores must be an integer from 1 to 100000, got {value!r}")
    elif key == "priority":
        if not _is_int(value) or not -_BIG <= value <= _BIG:
            problems.append(f"{where}: priority must be an integer from -{_BIG} to {_BIG}, got {value!r}")
    elif key == "seed":
        if not _is_int(value) or not 0 <= value < 2**32:
            problems.append(f"{where}: seed must be an integer from 0 to 4294967295, got {value!r}")
    elif key == "n_resamples":
        if not _is_int(value) or not 1 <= value <= 1_000_000:
            problems.append(f"{where}: n_resamples must be an integer from 1 to 1000000, got {value!r}")
    elif key == "max_attempts":
        if not _is_int(value) or not 1 <= value <= 100:
            problems.append(f"{where}: max_attempts must be an integer from 1 to 100, got {value!r}")
    elif key in ("allowed_hosts", "denied_hosts", "train_hosts"):
        hosts = _str_list(value, key, where, problems)
        for i, host in enumerate(hosts or ()):
            _check_text(host, f"{key}[{i}]", MAX_NAME, where, problems)
        if key == "train_hosts" and hosts == ():
            problems.append(f"{where}: train_hosts must name at least one host")
    elif key == "split_recipe":
        _choice(value, SPLIT_RECIPES, "split_recipe", where, problems)
    elif key == "mode":
        _choice(value, MODES, "mode", where, problems)
    return len(problems) == before


def _check_defaults(defaults: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    good = {}
    for key, value in defaults.items():
        if key not in _DEFAULTABLE:
            hint = difflib.get_close_matches(str(key), _DEFAULTABLE, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(f"[defaults]: unknown key {key!r}{did}; valid keys: {', '.join(_DEFAULTABLE)}")
        elif _check_field(key, value, "[defaults]", problems):
            good[key] = value
    return good


def _hosts(raw: Any, problems: list[str]) -> dict[str, HostSpec]:
    if not isinstance(raw, dict):
        problems.append("[hosts] must be a table of [hosts.NAME] tables")
        return {}
    hosts = {}
    for name, table in raw.items():
        printable = name.isprintable() and len(name) <= MAX_NAME
        where = f"[hosts.{name}]" if printable else f"[hosts.{_short(name)!r}]"
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            continue
        before = len(problems)
        if not printable:
            _check_text(name, "the host name", MAX_NAME, where, problems)
        _unknown_keys(table, _HOST_KEYS, where, problems)
        description = table.get("description", "")
        if not isinstance(description, str):
            problems.append(f"{where}: description must be a string, got {description!r}")
        else:
            _check_text(description, "description", MAX_DESCRIPTION, where, problems)
        priority = table.get("priority", 0)
        if not _is_int(priority) or not -_BIG <= priority <= _BIG:
            problems.append(f"{where}: priority must be an integer, got {priority!r}")
        lists = {}
        for key in ("allow_jobs", "deny_jobs"):
            models = _str_list(table.get(key, []), key, where, problems) or ()
            for model in models:
                _choice(model, hyperparams.MODELS, f"model in {key}", where, problems)
            lists[key] = models
        if len(problems) == before:
            hosts[name] = HostSpec(name, description, priority, lists["allow_jobs"], lists["deny_jobs"])
    return hosts


def _job_from_table(table: dict[str, Any], defaults: dict[str, Any], where: str, problems: list[str]) -> JobSpec | None:
    before = len(problems)
    _unknown_keys(table, _JOB_KEYS, where, problems)

    name = table.get("name")
    if name is None:
        problems.append(f"{where}: missing 'name'")
    elif not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: name must be a non-empty string, got {name!r}")
    else:
        _check_text(name, "name", MAX_NAME, where, problems)

    model = table.get("model")
    if model is None:
        problems.append(f"{where}: missing 'model'; valid models: {', '.join(hyperparams.MODELS)}")
    elif _choice(model, hyperparams.MODELS, "model", where, problems):
        hyper = table.get("hyper", {})
        if not isinstance(hyper, dict):
            problems.append(f"{where}: hyper must be a table, got {hyper!r}")
        else:
            problems.extend(f"{where}: {p}" for p in hyperparams.problems(model, hyper))

    values: dict[str, Any] = {}
    for key in _JOB_KEYS:
        if key in ("name", "model", "hyper"):
            continue
        if key in table:
            value = table[key]
        elif key in defaults:
            value = defaults[key]
        else:
            continue
        if _check_field(key, value, where, problems):
            values[key] = value

    if table.get("min_vram_gib", 0) and not (table.get("require_cuda") or table.get("prefer_cuda")):
        problems.append(f"{where}: min_vram_gib only applies to CUDA jobs; also set require_cuda = true or prefer_cuda = true")

    if len(problems) != before:
        return None
    for key in ("allowed_hosts", "denied_hosts", "train_hosts"):
        if key in values:
            values[key] = tuple(values[key])
    for key in ("min_vram_gib", "min_ram_gib", "max_runtime_s", "prefer_cuda_grace_s"):
        if key in values:
            values[key] = float(values[key])
    return JobSpec(name=name, model=model, hyper=dict(table.get("hyper", {})), **values)
