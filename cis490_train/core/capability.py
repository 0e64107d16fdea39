"""What this host can do: cores, RAM, CUDA devices and their VRAM, versions.

`Capability.probe()` never raises: a missing GPU library or driver means "no
CUDA", not a crash. `CIS490_CAPABILITY_FILE` replaces (overlays) the probe so
one machine can stand in for several hosts in tests and demos.
"""

from __future__ import annotations

import json
import os
import platform as _platform
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import CapabilityFileError

_GIB = 1024**3


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    vram_total_gib: float
    vram_free_gib: float


@dataclass(frozen=True)
class Capability:
    host_id: str
    cpu_cores: int
    ram_total_gib: float
    ram_available_gib: float
    cuda_devices: tuple[GpuDevice, ...] = ()
    torch_version: str | None = None
    xgboost_version: str | None = None
    git_commit: str | None = None
    platform: str = field(default_factory=lambda: f"{_platform.system()}-{_platform.machine()}")
    python_version: str = field(default_factory=_platform.python_version)

    @property
    def cuda_available(self) -> bool:
        return bool(self.cuda_devices)

    @property
    def max_vram_total_gib(self) -> float:
        return max((d.vram_total_gib for d in self.cuda_devices), default=0.0)

    @property
    def max_vram_free_gib(self) -> float:
        return max((d.vram_free_gib for d in self.cuda_devices), default=0.0)

    @classmethod
    def probe(cls, host_id: str | None = None) -> Capability:
        total, available = _ram_gib()
        return cls(
            host_id=host_id or _hostname(),
            cpu_cores=_cores(),
            ram_total_gib=total,
            ram_available_gib=available,
            cuda_devices=_cuda_devices(),
            torch_version=_version("torch"),
            xgboost_version=_version("xgboost") or _version("xgboost-cpu"),
            git_commit=_git_commit(),
        )

    @classmethod
    def load(cls, capability_file: Path | None = None, host_id: str | None = None) -> Capability:
        """The probe, overlaid with the capability file when one is configured."""
        cap = cls.probe()
        if capability_file is not None:
            cap = cap.overlay(_read_file(capability_file), source=str(capability_file))
        if host_id:
            cap = replace(cap, host_id=host_id)
        return cap

    def overlay(self, data: dict[str, Any], source: str = "capability") -> Capability:
        known = set(self.__dataclass_fields__) | {"cuda_available"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CapabilityFileError(f"{source}: unknown keys {unknown}; valid keys: {sorted(self.__dataclass_fields__)}")
        merged = asdict(self)
        merged.update({k: v for k, v in data.items() if k != "cuda_available"})
        try:
            return Capability.from_dict(merged)
        except (TypeError, ValueError, KeyError) as exc:
            raise CapabilityFileError(f"{source}: {exc}") from None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Capability:
        devices = tuple(
            GpuDevice(
                index=int(g.get("index", i)),
                name=str(g.get("name", "cuda")),
                vram_total_gib=float(g["vram_total_gib"]),
                vram_free_gib=float(g.get("vram_free_gib", g["vram_total_gib"])),
            )
            for i, g in enumerate(d.get("cuda_devices") or ())
        )
        cores = d["cpu_cores"]
        if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
            raise ValueError(f"cpu_cores must be a positive integer, got {cores!r}")
        return cls(
            host_id=str(d["host_id"]),
            cpu_cores=cores,
            ram_total_gib=float(d["ram_total_gib"]),
            ram_available_gib=float(d.get("ram_available_gib", d["ram_total_gib"])),
            cuda_devices=devices,
            torch_version=d.get("torch_version"),
            xgboost_version=d.get("xgboost_version"),
            git_commit=d.get("git_commit"),
            platform=d.get("platform", ""),
            python_version=d.get("python_version", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cuda_devices"] = [asdict(g) for g in self.cuda_devices]
        d["cuda_available"] = self.cuda_available
        return d


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CapabilityFileError(f"CIS490_CAPABILITY_FILE={path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CapabilityFileError(f"CIS490_CAPABILITY_FILE={path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CapabilityFileError(f"CIS490_CAPABILITY_FILE={path}: must hold a JSON object like `cis490-train capability --json`")
    return data


def _hostname() -> str:
    try:
        return socket.gethostname() or "localhost"
    except OSError:
        return "localhost"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _ram_gib() -> tuple[float, float]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return round(vm.total / _GIB, 2), round(vm.available / _GIB, 2)
    except Exception:
        return 0.0, 0.0


def _cuda_devices() -> tuple[GpuDevice, ...]:
    """NVML when the bindings are installed, else nvidia-smi; anything failing means no CUDA.

    Only the devices CUDA_VISIBLE_DEVICES leaves visible count (one worker per GPU sets it).
    """
    try:
        devices = _nvml_devices()
    except Exception:
        try:
            devices = _smi_devices()
        except Exception:
            return ()
    return _visible(devices, os.environ.get("CUDA_VISIBLE_DEVICES"))


def _visible(devices: tuple[GpuDevice, ...], mask: str | None) -> tuple[GpuDevice, ...]:
    if mask is None:
        return devices
    by_index = {d.index: d for d in devices}
    picked = []
    for part in (p.strip() for p in mask.split(",")):
        if part.startswith(("GPU-", "MIG-")):
            return devices  # UUIDs cannot be matched to probe indices here; keep what the probe saw
        if not part.isdigit() or int(part) not in by_index:
            break  # CUDA ignores everything from the first invalid entry on
        picked.append(by_index[int(part)])
    return tuple(picked)


def _nvml_devices() -> tuple[GpuDevice, ...]:
    import pynvml

    pynvml.nvmlInit()
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else name
            devices.append(GpuDevice(i, name, round(mem.total / _GIB, 2), round(mem.free / _GIB, 2)))
        return tuple(devices)
    finally:
        pynvml.nvmlShutdown()


def _smi_devices() -> tuple[GpuDevice, ...]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    out = subprocess.run(
        [smi, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    devices = []
    for line in out.strip().splitlines():
        index, name, total, free = (part.strip() for part in line.split(","))
        devices.append(GpuDevice(int(index), name, round(float(total) / 1024, 2), round(float(free) / 1024, 2)))
    return tuple(devices)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except Exception:
        return None


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run(
            [git, "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except Exception:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
