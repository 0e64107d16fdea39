"""Manifest loading: the earlier system's format and job ids, every error collected at once."""

from __future__ import annotations

import hashlib
import json

import pytest

from cis490_train.errors import ManifestError
from cis490_train.core.hyper import MODELS
from cis490_train.core.manifest import Manifest
from cis490_train.core.specs import JobSpec
from helpers.fleet import ROOT


BASE = """
schema_version = 1
name = "t"
"""


def load(text: str) -> Manifest:
    return Manifest.from_toml(BASE + text, source="t.toml")


def problems(text: str, header: str = BASE) -> list[str]:
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(header + text, source="t.toml")
    return info.value.problems


def seed_job_id(model, mode, hyper, split_recipe, train_hosts, seed) -> str:
    """The earlier system's formula, written out independently of the project code."""
    payload = {"model": model, "mode": mode, "hyper": hyper, "split_recipe": split_recipe, "train_hosts": list(train_hosts), "seed": seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def test_job_ids_match_the_earlier_formula_including_defaults():
    m = load(
        """
[defaults]
split_recipe = "time"
train_hosts = ["a", "b"]
seed = 7

[[jobs]]
name = "plain"
model = "gbt"

[[jobs]]
name = "tuned"
model = "mlp"
mode = "oracle"
hyper = { lr = 0.001, epochs = 3, hidden_dim = 64 }
split_recipe = "sample"
train_hosts = ["elliott-thinkpad"]
seed = 3
priority = 99
require_cuda = true
min_vram_gib = 2.5
"""
    )
    plain, tuned = m.jobs
    assert plain.job_id == seed_job_id("gbt", "realistic", {}, "time", ["a", "b"], 7)
    assert tuned.job_id == seed_job_id("mlp", "oracle", {"lr": 0.001, "epochs": 3, "hidden_dim": 64}, "sample", ["elliott-thinkpad"], 3)


def test_seed_defaults_are_kept():
    (job,) = load('[[jobs]]\nname = "j"\nmodel = "knn"\n').jobs
    assert (job.mode, job.split_recipe, job.train_hosts, job.seed) == ("realistic", "host", ("elliott-thinkpad",), 0)
    assert (job.min_ram_gib, job.min_cores, job.n_resamples, job.priority) == (4.0, 1, 1000, 0)
    assert job.job_id == seed_job_id("knn", "realistic", {}, "host", ["elliott-thinkpad"], 0)


def test_scheduling_fields_do_not_change_the_id():
    a = JobSpec(name="a", model="gbt")
    b = JobSpec(name="b", model="gbt", priority=5, require_cuda=True, min_ram_gib=64.0, allowed_hosts=("x",))
    assert a.job_id == b.job_id
    assert JobSpec(name="c", model="gbt", seed=1).job_id != a.job_id


def test_to_dict_round_trips():
    (job,) = load('[[jobs]]\nname = "j"\nmodel = "mlp"\nhyper = { epochs = 2 }\nallowed_hosts = ["h"]\n').jobs
    again = JobSpec.from_dict(json.loads(json.dumps(job.to_dict())))
    assert again == job and again.job_id == job.job_id


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        Manifest.load(tmp_path / "nope.toml")


def test_bad_toml_and_bad_bytes(tmp_path):
    assert "invalid TOML" in problems("[[jobs]\nname=", header="")[0]
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"schema_version = 1\nname = \"\xff\xfe\"\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        Manifest.load(bad)


@pytest.mark.parametrize("version", ["2", '"1"', "true"])
def test_wrong_schema_version(version):
    found = problems('[[jobs]]\nname = "j"\nmodel = "gbt"\n', header=f"schema_version = {version}\n")
    assert any("schema_version must be 1" in p for p in found)


def test_no_jobs():
    assert problems("") == ["manifest has no [[jobs]] entries"]


def test_missing_name_and_model():
    found = problems('[[jobs]]\nmodel = "gbt"\n[[jobs]]\nname = "x"\n')
    assert "jobs[0]: missing 'name'" in found
    assert any(p.startswith("job 'x' (jobs[1]): missing 'model'") and "gbt" in p for p in found)


@pytest.mark.parametrize(
    "field,value,valid",
    [("model", "gbtt", MODELS), ("mode", "orcale", ("realistic", "oracle")), ("split_recipe", "hosts", ("host", "sample", "time"))],
)
def test_unknown_choice_names_the_job_and_the_valid_choices(field, value, valid):
    body = {"model": "gbt", "mode": "realistic", "split_recipe": "host"}
    body[field] = value
    lines = "\n".join(f'{k} = "{v}"' for k, v in body.items())
    (found,) = problems(f'[[jobs]]\nname = "j1"\n{lines}\n')
    assert found.startswith("job 'j1' (jobs[0])")
    assert repr(value) in found and "did you mean" in found
    assert all(choice in found for choice in valid)


def test_duplicate_job_by_content():
    found = problems('[[jobs]]\nname = "a"\nmodel = "gbt"\n[[jobs]]\nname = "b"\nmodel = "gbt"\npriority = 5\n')
    assert len(found) == 1 and "duplicates job 'a' by content" in found[0]


def test_duplicate_names():
    found = problems('[[jobs]]\nname = "a"\nmodel = "gbt"\n[[jobs]]\nname = "a"\nmodel = "mlp"\n')
    assert any("already used" in p for p in found)


def test_unknown_keys_with_did_you_mean():
    found = problems(
        '[hosts.pi]\nalow_jobs = ["gbt"]\n[defaults]\nsed = 1\n[[jobs]]\nname = "j"\nmodel = "gbt"\nrequire_cude = true\n'
    )
    assert any("[hosts.pi]: unknown key 'alow_jobs' (did you mean 'allow_jobs'?)" in p for p in found)
    assert any("[defaults]: unknown key 'sed' (did you mean 'seed'?)" in p for p in found)
    assert any("unknown key 'require_cude' (did you mean 'require_cuda'?)" in p for p in found)


def test_hyper_checked_against_the_model_schema():
    (unknown, wrong_type) = problems('[[jobs]]\nname = "j"\nmodel = "mlp"\nhyper = { epoch = 3, lr = "fast" }\n')
    assert "unknown mlp hyperparameter 'epoch' (did you mean 'epochs'?)" in unknown
    assert "valid keys: amp, batch_size, dropout, early_stopping, epochs, hidden_dim, lr" in unknown
    assert "'lr' must be a number" in wrong_type
    assert problems('[[jobs]]\nname = "j"\nmodel = "gbt"\nhyper = { max_depth = 0 }\n') == [
        "job 'j' (jobs[0]): gbt hyperparameter 'max_depth' must be >= 1, got 0"
    ]


def test_wrong_types_and_ranges():
    found = problems(
        '[[jobs]]\nname = "j"\nmodel = "gbt"\nrequire_cuda = "yes"\nmin_cores = 0\nmin_ram_gib = -1\n'
        'allowed_hosts = "pi"\nseed = 1.5\nn_resamples = 0\ntrain_hosts = []\n'
    )
    for fragment in ("require_cuda must be true or false", "min_cores must be", "min_ram_gib must be", "allowed_hosts must be a list", "seed must be", "n_resamples must be", "train_hosts must name at least one host"):
        assert any(fragment in p for p in found), fragment


def test_vram_floor_needs_a_cuda_job():
    found = problems('[[jobs]]\nname = "j"\nmodel = "gbt"\nmin_vram_gib = 8\n')
    assert any("min_vram_gib only applies to CUDA jobs" in p for p in found)


def test_host_policies_name_real_models():
    found = problems('[hosts.pi]\nallow_jobs = ["gbt", "xgb"]\n[[jobs]]\nname = "j"\nmodel = "gbt"\n')
    assert any("[hosts.pi]: unknown model in allow_jobs 'xgb'" in p for p in found)
    m = load('[hosts.pi]\nallow_jobs = ["gbt", "mlp"]\ndeny_jobs = ["mlp"]\n[[jobs]]\nname = "j"\nmodel = "gbt"\n')
    pi = m.hosts["pi"]
    assert pi.refuses("gbt") is None and "deny_jobs" in pi.refuses("mlp") and "allow_jobs" in pi.refuses("knn")


def test_every_problem_is_reported_at_once():
    text = """
[[jobs]]
name = "a"
model = "nope"

[[jobs]]
name = "b"
model = "gbt"
mode = "x"

[[jobs]]
model = "mlp"
hyper = { bogus = 1 }
"""
    found = problems(text, header="schema_version = 3\n")
    assert len(found) == 5
    assert str(ManifestError("m.toml", found)).startswith("m.toml: 5 problems")


def test_defaults_apply_and_jobs_override():
    m = load('[defaults]\nmin_ram_gib = 8\nmax_attempts = 5\n[[jobs]]\nname = "a"\nmodel = "gbt"\n[[jobs]]\nname = "b"\nmodel = "mlp"\nmin_ram_gib = 2\n')
    a, b = m.jobs
    assert (a.min_ram_gib, a.max_attempts, b.min_ram_gib, b.max_attempts) == (8.0, 5, 2.0, 5)


@pytest.mark.parametrize("name", ["demo.toml", "fleet.example.toml"])
def test_shipped_manifests_load(name):
    m = Manifest.load(ROOT / "manifests" / name)
    assert m.jobs and len({j.job_id for j in m.jobs}) == len(m.jobs)


def test_example_fleet_covers_every_model_in_both_modes_and_the_four_host_kinds():
    m = Manifest.load(ROOT / "manifests" / "fleet.example.toml")
    assert {(j.model, j.mode) for j in m.jobs} >= {(model, mode) for model in MODELS for mode in ("realistic", "oracle")}
    assert m.hosts["pi-coordinator"].allow_jobs == ("gbt", "mlp")
    assert any("Windows" in h.description for h in m.hosts.values())
    assert any(j.require_cuda and j.min_vram_gib for j in m.jobs)
