"""The starter manifest `cis490-train manifest init` writes: a valid document with every key explained.

The document is data rendered by tomli-w; the comments are added afterwards,
since tomli-w writes none. Model names, modes, split recipes, defaults and
hyperparameters come from manifest.py and hyper.py, so the starter follows them.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from typing import Any

import tomli_w

from . import manifest as fmt
from .hyper import MODELS, SCHEMAS, HyperParam

_MODE_HELP = {
    "realistic": "only the features available at inference time",
    "oracle": "adds the oracle-only features: an upper bound",
}
_SPLIT_HELP = {
    "host": "train on train_hosts, test on the other hosts",
    "sample": "seeded stratified split of all windows",
    "time": "per host, earlier windows train, later ones test",
}

TOP_HELP = {
    "schema_version": f"The manifest format; must be {fmt.SCHEMA_VERSION}.",
    "name": "The manifest's name: its jobs carry it, so a re-apply can list the jobs this file no longer has.",
}

HOST_HELP = {
    "description": "free text, kept with the policy",
    "priority": "the host's rank, kept with the policy (scheduling does not use it)",
    "allow_jobs": "only these models (empty: all)",
    "deny_jobs": "never these models",
}

JOB_HELP = {
    "name": "unique within the manifest; show, explain, cancel and requeue accept it",
    "model": " | ".join(MODELS),
    "mode": " | ".join(f"{m} ({_MODE_HELP[m]})" for m in fmt.MODES),
    "priority": "higher runs first (any integer)",
    "require_cuda": "only CUDA hosts may run it",
    "prefer_cuda": "start on the CUDA tier; CPU hosts may take it after prefer_cuda_grace_s",
    "min_vram_gib": "GiB of VRAM it needs (with require_cuda or prefer_cuda): the cuda-<N>g tier",
    "min_ram_gib": "GiB of RAM a host must have",
    "min_cores": "CPU cores a host must have",
    "allowed_hosts": "only these hosts (empty: any)",
    "denied_hosts": "never these hosts",
    "hyper": "the model's hyperparameters (list below); keys left out take the model's defaults",
    "split_recipe": " | ".join(f"{s} ({_SPLIT_HELP[s]})" for s in fmt.SPLIT_RECIPES),
    "train_hosts": "the hosts whose windows train a host split",
    "seed": "seed of the split and the model (0 to 4294967295)",
    "n_resamples": "bootstrap resamples of the confidence intervals",
    "max_attempts": "tries in all before the job fails (1 to 100)",
    "retry_on_error": "also retry the job's own errors and timeouts, not only lost hosts",
    "max_runtime_s": "stop and fail it as a timeout after this many seconds (0: no limit)",
    "prefer_cuda_grace_s": "seconds a prefer_cuda job waits for a CUDA host before CPU hosts may take it",
}
_REQUIRED = ("name", "model")
_IDENTITY = ("model", "mode", "hyper", "split_recipe", "train_hosts", "seed")


def _job_default(key: str) -> Any:
    f = fmt.JobSpec.__dataclass_fields__[key]
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return list(value) if isinstance(value, tuple) else value


def _hyper(model: str, *names: str) -> dict[str, Any]:
    """A few of the model's hyperparameters at their defaults."""
    params = {p.name: p for p in SCHEMAS[model]}
    return {name: params[name].default for name in names}


def starter_document(name: str = "my-fleet") -> dict[str, Any]:
    """The starter manifest as data: what `Manifest.from_dict` reads."""
    return {
        "schema_version": fmt.SCHEMA_VERSION,
        "name": name,
        "defaults": {key: _job_default(key) for key in ("split_recipe", "train_hosts", "seed", "n_resamples", "max_attempts")},
        "hosts": {
            "pi-coordinator": {
                "description": "Raspberry Pi, CPU only: trains the light models",
                "priority": 0,
                "allow_jobs": ["gbt", "mlp"],
                "deny_jobs": [],
            },
        },
        "jobs": [
            {"name": "gbt-realistic", "model": "gbt", "mode": "realistic", "priority": 100, "hyper": _hyper("gbt", "n_estimators", "max_depth")},
            {"name": "gbt-oracle", "model": "gbt", "mode": "oracle", "priority": 100, "hyper": _hyper("gbt", "n_estimators", "max_depth")},
            {
                "name": "mlp-realistic-sample-split",
                "model": "mlp",
                "mode": "realistic",
                "split_recipe": "sample",
                "priority": 50,
                "hyper": _hyper("mlp", "epochs", "hidden_dim"),
            },
            {
                "name": "transformer-realistic",
                "model": "transformer",
                "mode": "realistic",
                "priority": 10,
                "prefer_cuda": True,
                "hyper": _hyper("transformer", "epochs", "d_model", "n_heads"),
            },
        ],
    }


def render(doc: dict[str, Any]) -> str:
    """The document as TOML (tomli-w), with a comment above the first use of every key."""
    out = _comment(
        "A cis490-train manifest: the jobs to train and what each host may run.",
        "  cis490-train manifest check FILE   validate it (no Redis needed)",
        "  cis490-train manifest diff FILE    what applying it would change in the live registry",
        "  cis490-train enqueue FILE          apply it; re-apply after every edit (idempotent)",
        "Hosts' capability (cores, RAM, CUDA, VRAM) is probed on each host, never declared here.",
    )
    out += "\n" + _annotate(tomli_w.dumps({k: doc[k] for k in ("schema_version", "name")}), TOP_HELP, set())

    out += "\n" + _comment(*_wrap(f"Values every job takes unless it sets its own. [defaults] may set: {', '.join(fmt._DEFAULTABLE)}."))
    out += _annotate(tomli_w.dumps({"defaults": doc["defaults"]}), JOB_HELP, set())

    for i, (host, policy) in enumerate(doc.get("hosts", {}).items()):
        if i == 0:
            out += "\n" + _comment(
                *_wrap(
                    "A host's policy, under its host id (CIS490_HOST_ID, else the hostname); a host without one "
                    f"may run every model. Keys: {', '.join(fmt._HOST_KEYS)}; allow_jobs and deny_jobs take model names."
                )
            )
        out += _annotate(tomli_w.dumps({"hosts": {host: policy}}), HOST_HELP, set())

    out += "\n" + _job_reference()
    seen: set[str] = set()
    for job in doc["jobs"]:
        scalars = {k: v for k, v in job.items() if k != "hyper"}
        out += "\n[[jobs]]\n" + _annotate(tomli_w.dumps(scalars), JOB_HELP, seen)
        if "hyper" in job:
            params = {p.name: p for p in SCHEMAS[job["model"]]}
            help_ = {key: f"{params[key].help} ({_bounds(params[key])})" for key in job["hyper"]}
            out += "\n" + _annotate(tomli_w.dumps({"jobs": {"hyper": job["hyper"]}}), help_, set())
    return out


def _job_reference() -> str:
    width = max(map(len, JOB_HELP)) + 2
    lines = _wrap(
        f"One [[jobs]] table per job. A job's id is a hash of its {', '.join(_IDENTITY[:-1])} and {_IDENTITY[-1]}; "
        "the other keys only schedule it. Every key a job may set, with its default:"
    )
    for key in fmt._JOB_KEYS:
        default = "required" if key in _REQUIRED else f"default {_toml(_job_default(key))}"
        lines += _wrap(f"{JOB_HELP[key]} [{default}]", initial=f"  {key:<{width}}", subsequent=" " * (width + 4))
    lines += ["", *_wrap("hyper keys of each model, at their defaults (`cis490-train models` shows types, ranges and meanings):")]
    for model in MODELS:
        text = ", ".join(f"{p.name}={_toml(p.default)}" for p in SCHEMAS[model])
        lines += _wrap(text, initial=f"  {model}: ", subsequent="      ")
    return _comment(*lines)


def _bounds(p: HyperParam) -> str:
    if p.choices:
        return " | ".join(p.choices)
    if p.low is not None:
        return f"{p.type.__name__}, {p.low:g} to {p.high:g}"
    return p.type.__name__


def _toml(value: Any) -> str:
    """A value as TOML on one line (tomli-w puts each array item on its own line)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return tomli_w.dumps({"v": value}).partition("=")[2].strip()


def _wrap(text: str, initial: str = "", subsequent: str = "") -> list[str]:
    return textwrap.wrap(text, 96, initial_indent=initial, subsequent_indent=subsequent, break_on_hyphens=False, break_long_words=False)


_KEY_LINE = re.compile(r"^([A-Za-z0-9_-]+) = ")


def _annotate(text: str, help_: dict[str, str], seen: set[str]) -> str:
    """Put `# help` above each key's line the first time the key appears."""
    lines = []
    for line in text.splitlines(keepends=True):
        match = _KEY_LINE.match(line)
        if match and match.group(1) in help_ and match.group(1) not in seen:
            seen.add(match.group(1))
            lines.append(_comment(*_wrap(help_[match.group(1)])))
        lines.append(line)
    return "".join(lines)


def _comment(*lines: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)
