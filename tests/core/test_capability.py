"""Capability: the probe never raises; a capability file stands in for another host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cis490_train.core.capability import Capability
from cis490_train.errors import CapabilityFileError


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """Put an `nvidia-smi` that prints `lines` (and exits with `code`) first on PATH; hide NVML."""

    def install(lines: list[str], code: int = 0) -> None:
        fake = tmp_path / "nvidia-smi"
        fake.write_text("#!/bin/sh\n" + "".join(f"echo '{line}'\n" for line in lines) + f"exit {code}\n")
        fake.chmod(0o755)

    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    return install


def test_probe_reports_this_machine():
    cap = Capability.probe()
    assert cap.cpu_cores >= 1 and cap.ram_total_gib > 0 and cap.host_id
    assert cap.torch_version and cap.torch_version.startswith("2.")
    assert Capability.from_dict(json.loads(json.dumps(cap.to_dict()))) == cap


def test_broken_gpu_tools_mean_no_cuda(fake_smi):
    """A failing nvidia-smi (driver gone, garbage output) is "no CUDA", not a crash."""
    fake_smi(["NVIDIA-SMI has failed"], code=9)
    assert Capability.probe().cuda_devices == ()
    fake_smi(["not, csv"])
    assert Capability.probe().cuda_devices == ()


def test_nvidia_smi_output_is_parsed(fake_smi):
    fake_smi(["0, NVIDIA GeForce RTX 3060, 12288, 11000", "1, NVIDIA RTX A500, 4096, 4000"])
    cap = Capability.probe()
    assert [(g.name, g.vram_total_gib) for g in cap.cuda_devices] == [("NVIDIA GeForce RTX 3060", 12.0), ("NVIDIA RTX A500", 4.0)]
    assert cap.cuda_available and cap.max_vram_total_gib == 12.0


def test_capability_file_overlays_the_probe_and_host_id_overrides(tmp_path):
    path = tmp_path / "cap.json"
    path.write_text(json.dumps({"host_id": "lab-ws1", "cpu_cores": 16, "cuda_devices": [{"name": "RTX 4090", "vram_total_gib": 24}]}))
    cap = Capability.load(path)
    assert (cap.host_id, cap.cpu_cores, cap.max_vram_total_gib) == ("lab-ws1", 16, 24.0)
    assert cap.ram_total_gib == Capability.probe().ram_total_gib
    assert Capability.load(path, host_id="other").host_id == "other"


@pytest.mark.parametrize(
    "content,message",
    [("{", "not JSON"), ("[]", "JSON object"), ('{"cpu_cores": "many"}', "cpu_cores"), ('{"gpus": 1}', "unknown keys")],
)
def test_bad_capability_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "cap.json"
    path.write_text(content)
    with pytest.raises(CapabilityFileError, match=message):
        Capability.load(path)


def test_cli_json_round_trips_through_the_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    out = subprocess.run([sys.executable, "-m", "cis490_train", "capability", "--json"], env=env, capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    data["host_id"] = "stand-in"
    path = tmp_path / "cap.json"
    path.write_text(json.dumps(data))
    again = subprocess.run(
        [sys.executable, "-m", "cis490_train", "capability", "--json"],
        env={**env, "CIS490_CAPABILITY_FILE": str(path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(again.stdout)["host_id"] == "stand-in"
    bad = subprocess.run(
        [sys.executable, "-m", "cis490_train", "capability"],
        env={**env, "CIS490_CAPABILITY_FILE": str(tmp_path / "missing.json")},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: CIS490_CAPABILITY_FILE=") and "Traceback" not in bad.stderr


def test_cuda_visible_devices_limits_what_this_worker_sees(fake_smi, monkeypatch):
    fake_smi(["0, GPU zero, 24576, 20000", "1, GPU one, 8192, 8000"])
    for mask, names in (("1", ["GPU one"]), ("1,0", ["GPU one", "GPU zero"]), ("", []), ("-1", []), ("0,7,1", ["GPU zero"])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mask)
        assert [g.name for g in Capability.probe().cuda_devices] == names, mask
