"""A deterministic synthetic dataset in the data contract, for development, tests and demos.

The real CIS490 telemetry is not public, so this generator has to exercise what
makes the real problem interesting: a class signal in both the summary
features and the sequences, a per-host shift (each machine has its own
baseline, so training on one host and testing on others is harder than a
random split), a slow drift over time, weak attacks that overlap benign
activity, unlabelled windows, and privileged (oracle) features that see the
class almost directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DataError
from .contract import Feature, Schema, make_schema, windows_table
from .publish import publish, refuse_foreign_dir

CLASSES = ("benign", "miner", "ransomware", "scanner", "exfil")
CLASS_PRIORS = (0.45, 0.14, 0.14, 0.14, 0.13)
HOSTS = ("elliott-thinkpad", "lab-ws1", "lab-ws2", "curie-laptop", "darwin-server", "euler-pi")
UNLABELLED_SHARE = 0.15
WINDOW_SECONDS = 60
EPOCH_MS = 1_772_409_600_000  # 2026-03-02T00:00:00Z
GENERATOR = "cis490-train synthetic"  # schema.json's source.generator, by which results name this data

# name, unit mapping, centre, description
_REALISTIC = (
    ("f_cpu_user_pct", "pct", -1.0, "mean user CPU over the window, percent"),
    ("f_cpu_system_pct", "pct", -2.0, "mean system CPU over the window, percent"),
    ("f_mem_rss_mb", "pos", 900.0, "resident memory of the top process group, MiB"),
    ("f_disk_read_mbps", "pos", 4.0, "disk read throughput, MB/s"),
    ("f_disk_write_mbps", "pos", 3.0, "disk write throughput, MB/s"),
    ("f_file_renames", "pos", 6.0, "file renames per minute"),
    ("f_file_write_entropy", "bits", 0.5, "mean Shannon entropy of written blocks, bits per byte"),
    ("f_net_tx_kbps", "pos", 60.0, "outbound network throughput, kB/s"),
    ("f_net_rx_kbps", "pos", 180.0, "inbound network throughput, kB/s"),
    ("f_net_conn_attempts", "pos", 25.0, "outbound connection attempts per minute"),
    ("f_net_unique_dst", "pos", 8.0, "distinct destination addresses"),
    ("f_dns_queries", "pos", 30.0, "DNS queries per minute"),
    ("f_proc_spawns", "pos", 4.0, "processes started per minute"),
    ("f_ctx_switches_k", "pos", 40.0, "context switches, thousands per second"),
    ("f_gpu_util_pct", "pct", -2.5, "mean GPU utilisation, percent"),
    ("f_open_files", "pos", 350.0, "open file handles"),
    ("f_syscalls_k", "pos", 120.0, "system calls, thousands per second"),
    ("f_page_faults_k", "pos", 15.0, "page faults, thousands per second"),
    ("f_tcp_retransmits", "pos", 3.0, "TCP retransmissions per minute"),
    ("f_failed_logins", "pos", 0.3, "failed authentication attempts per minute"),
    ("f_registry_writes", "pos", 20.0, "configuration store writes per minute"),
    ("f_usb_events", "pos", 0.2, "USB attach and detach events per minute"),
    ("f_cpu_temp_c", "lin", 52.0, "CPU package temperature, degrees Celsius"),
    ("f_battery_drain_pct", "pos", 0.4, "battery drain per minute, percent"),
)
_ORACLE = (
    ("o_edr_miner_verdict", "endpoint detection verdict score for coin mining"),
    ("o_edr_ransom_verdict", "endpoint detection verdict score for ransomware"),
    ("o_ids_scan_verdict", "network IDS verdict score for scanning"),
    ("o_dlp_exfil_verdict", "data-loss-prevention verdict score for exfiltration"),
    ("o_analyst_severity", "severity an analyst assigned after the fact"),
    ("o_sandbox_detonation_score", "score from detonating the window's new binaries in a sandbox"),
)
# Class effects on the latent (standardised) summary features, by feature name, in units of
# EFFECT_SCALE: tuned so that realistic features separate the classes well but not perfectly.
EFFECT_SCALE = 1.5
_EFFECTS = {
    "miner": {
        "f_cpu_user_pct": 2.0,
        "f_gpu_util_pct": 1.8,
        "f_ctx_switches_k": 0.8,
        "f_cpu_temp_c": 1.4,
        "f_net_tx_kbps": 0.3,
        "f_battery_drain_pct": 1.0,
    },
    "ransomware": {
        "f_disk_write_mbps": 2.0,
        "f_file_renames": 2.2,
        "f_file_write_entropy": 1.8,
        "f_disk_read_mbps": 1.0,
        "f_open_files": 1.0,
        "f_cpu_system_pct": 0.6,
        "f_syscalls_k": 0.8,
    },
    "scanner": {
        "f_net_conn_attempts": 2.2,
        "f_net_unique_dst": 2.0,
        "f_dns_queries": 1.2,
        "f_tcp_retransmits": 1.5,
        "f_failed_logins": 0.8,
    },
    "exfil": {
        "f_net_tx_kbps": 2.0,
        "f_dns_queries": 0.8,
        "f_disk_read_mbps": 0.8,
        "f_net_unique_dst": 0.4,
        "f_usb_events": 0.6,
    },
}
# name, unit scale, description
_CHANNELS = (
    ("cpu_pct", 15.0, "CPU utilisation, percent"),
    ("mem_mb", 400.0, "resident memory, MiB"),
    ("disk_read_mbps", 5.0, "disk read throughput, MB/s"),
    ("disk_write_mbps", 5.0, "disk write throughput, MB/s"),
    ("net_tx_kbps", 80.0, "outbound network throughput, kB/s"),
    ("net_rx_kbps", 120.0, "inbound network throughput, kB/s"),
    ("dns_qps", 2.0, "DNS queries per second"),
    ("proc_spawns", 1.0, "processes started per sample"),
)


@dataclass(frozen=True)
class Preset:
    hosts: tuple[str, ...]
    windows_per_host: int
    n_features: int
    n_oracle: int
    seq_len: int
    n_channels: int


SMALL = Preset(HOSTS, 250, 16, 4, 32, 6)
DEFAULT = Preset(HOSTS, 800, 24, 6, 64, 8)


def synthesize(
    out: Path,
    small: bool = False,
    seed: int = 0,
    *,
    hosts: Sequence[str] | None = None,
    windows_per_host: int | None = None,
    n_features: int | None = None,
    n_oracle: int | None = None,
    seq_len: int | None = None,
    n_channels: int | None = None,
) -> Path:
    """Write the dataset to `out` atomically: same arguments, same bytes."""
    preset = SMALL if small else DEFAULT
    overrides = {
        "hosts": tuple(hosts) if hosts is not None else None,
        "windows_per_host": windows_per_host,
        "n_features": n_features,
        "n_oracle": n_oracle,
        "seq_len": seq_len,
        "n_channels": n_channels,
    }
    preset = replace(preset, **{k: v for k, v in overrides.items() if v is not None})
    _check_preset(preset)
    out = Path(out)
    refuse_foreign_dir(out)
    schema = _schema(preset, seed, "small" if small else "default")
    table, sequences = _generate(preset, schema, np.random.default_rng(seed))
    publish(out, schema, table, sequences)
    return out


def _check_preset(p: Preset) -> None:
    problems = []
    if not p.hosts or len(set(p.hosts)) != len(p.hosts) or not all(isinstance(h, str) and h for h in p.hosts):
        problems.append("hosts must be distinct non-empty names")
    if p.windows_per_host < 20:
        problems.append("windows_per_host must be at least 20")
    if p.n_features < 4:
        problems.append("n_features must be at least 4")
    if p.n_oracle < 0:
        problems.append("n_oracle must be >= 0")
    if p.seq_len < 8:
        problems.append("seq_len must be at least 8")
    if p.n_channels < 6:
        problems.append("n_channels must be at least 6")
    if problems:
        raise DataError("cannot synthesize: " + "; ".join(problems))


def _realistic_catalogue(n: int) -> list[tuple[str, str, float, str]]:
    extra = [(f"f_extra_{i:02d}", "lin", 0.0, "unnamed auxiliary counter") for i in range(n - len(_REALISTIC))]
    return list(_REALISTIC[:n]) + extra


def _oracle_catalogue(n: int) -> list[tuple[str, str]]:
    extra = [(f"o_extra_{i:02d}", "unnamed privileged score") for i in range(n - len(_ORACLE))]
    return list(_ORACLE[:n]) + extra


def _channel_catalogue(n: int) -> list[tuple[str, float, str]]:
    extra = [(f"aux_{i:02d}", 1.0, "unnamed auxiliary signal") for i in range(n - len(_CHANNELS))]
    return list(_CHANNELS[:n]) + extra


def _schema(p: Preset, seed: int, preset_name: str) -> Schema:
    features = [Feature(name, "realistic", desc) for name, _, _, desc in _realistic_catalogue(p.n_features)]
    features += [Feature(name, "oracle", desc) for name, desc in _oracle_catalogue(p.n_oracle)]
    channels = tuple(name for name, _, _ in _channel_catalogue(p.n_channels))
    source = {
        "generator": GENERATOR,
        "preset": preset_name,
        "seed": seed,
        "hosts": list(p.hosts),
        "windows_per_host": p.windows_per_host,
        "channel_descriptions": {name: desc for name, _, desc in _channel_catalogue(p.n_channels)},
    }
    return make_schema(CLASSES, tuple(features), p.seq_len, channels, WINDOW_SECONDS, source)


def _generate(p: Preset, schema: Schema, rng: np.random.Generator):
    n_hosts, per_host = len(p.hosts), p.windows_per_host
    n = n_hosts * per_host
    host_idx = np.repeat(np.arange(n_hosts), per_host)
    t_frac = np.tile(np.arange(per_host) / per_host, n_hosts)
    y = rng.choice(len(CLASSES), size=n, p=CLASS_PRIORS)
    intensity = np.where(y > 0, rng.uniform(0.4, 1.4, size=n), 0.0)
    host_expr = rng.uniform(0.6, 1.4, size=(n_hosts, len(CLASSES)))
    strength = intensity * host_expr[host_idx, y]
    load = rng.normal(rng.normal(0.0, 0.7, size=n_hosts)[host_idx], 1.0)

    summary = _summary_features(p, rng, y, strength, load, host_idx, t_frac)
    oracle = _oracle_features(p, rng, y)
    sequences = _sequences(p, rng, y, strength, load, host_idx)

    labels = np.array(CLASSES, dtype=object)[y]
    labels[rng.random(n) < UNLABELLED_SHARE] = None
    host_start = rng.integers(0, 600, size=n_hosts) * 60_000
    starts = EPOCH_MS + host_start[host_idx] + np.tile(np.arange(per_host), n_hosts) * WINDOW_SECONDS * 1000

    hosts = np.array(p.hosts, dtype=object)[host_idx]
    table = windows_table(schema, hosts, starts, labels, np.concatenate([summary, oracle], axis=1))
    return table, sequences


def _summary_features(p, rng, y, strength, load, host_idx, t_frac) -> np.ndarray:
    catalogue = _realistic_catalogue(p.n_features)
    n, d, n_hosts = len(y), len(catalogue), len(p.hosts)
    effects = np.zeros((len(CLASSES), d))
    index = {name: j for j, (name, *_) in enumerate(catalogue)}
    for k, cls in enumerate(CLASSES):
        for name, value in _EFFECTS.get(cls, {}).items():
            if name in index:
                effects[k, index[name]] = value
    host_offset = rng.normal(0.0, 0.8, size=(n_hosts, d))
    host_noise = np.exp(rng.normal(0.0, 0.2, size=n_hosts))
    drift = rng.normal(0.0, 0.4, size=(n_hosts, d))
    loadings = rng.uniform(0.2, 0.7, size=d)
    z = EFFECT_SCALE * effects[y] * strength[:, None]
    z += host_offset[host_idx] + drift[host_idx] * (t_frac[:, None] - 0.5)
    z += load[:, None] * loadings
    z += rng.normal(0.0, 1.0, size=(n, d)) * host_noise[host_idx, None]
    out = np.empty_like(z)
    for j, (_, unit, centre, _) in enumerate(catalogue):
        out[:, j] = _to_units(z[:, j], unit, centre)
    return out


def _to_units(z: np.ndarray, unit: str, centre: float) -> np.ndarray:
    """Monotone maps from the latent scale to plausible telemetry units."""
    if unit == "pct":
        return 100.0 / (1.0 + np.exp(-(centre + 0.8 * z)))
    if unit == "bits":
        return 8.0 / (1.0 + np.exp(-(centre + 0.7 * z)))
    if unit == "pos":
        return centre * np.exp(0.45 * z)
    return centre + (0.15 * abs(centre) if centre else 1.0) * z


def _oracle_features(p, rng, y) -> np.ndarray:
    """Privileged verdicts: one per attack class first, then random mixtures; no host shift."""
    n, k = len(y), len(CLASSES)
    embed = np.zeros((k, p.n_oracle))
    for j in range(p.n_oracle):
        if j < k - 1:
            embed[j + 1, j] = 2.5
        else:
            embed[:, j] = rng.normal(0.0, 1.0, size=k)
    z = embed[y] + rng.normal(0.0, 1.0, size=(n, p.n_oracle))
    return 1.0 / (1.0 + np.exp(-(z - 1.0)))


def _sequences(p, rng, y, strength, load, host_idx) -> np.ndarray:
    catalogue = _channel_catalogue(p.n_channels)
    n, L, C, n_hosts = len(y), p.seq_len, p.n_channels, len(p.hosts)
    ch = {name: j for j, (name, *_) in enumerate(catalogue)}
    phi = 0.7
    x = np.empty((n, L, C))
    x[:, 0] = rng.normal(size=(n, C))
    eps = rng.normal(size=(n, L, C)) * np.sqrt(1 - phi**2)
    for t in range(1, L):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    x *= np.exp(rng.normal(0.0, 0.2, size=(n_hosts, 1, C)))[host_idx]
    x += rng.normal(0.0, 0.8, size=(n_hosts, 1, C))[host_idx]
    x[:, :, [ch["cpu_pct"], ch["mem_mb"]]] += 0.5 * load[:, None, None]

    t = np.arange(L)[None, :]
    amp = 1.6 * strength[:, None]

    def on(k: int) -> np.ndarray:
        return (y == k)[:, None]

    # miner: sustained CPU with a slow oscillation and periodic pool beacons
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    period = rng.integers(6, 12, size=(n, 1))
    x[:, :, ch["cpu_pct"]] += on(1) * amp * (1.0 + 0.5 * np.sin(2 * np.pi * t / period + phase))
    x[:, :, ch["net_tx_kbps"]] += on(1) * amp * 0.8 * ((t + rng.integers(0, 8, size=(n, 1))) % 8 == 0)
    # ransomware: a ramp of reads and writes from a random onset
    onset = rng.uniform(0, L / 2, size=(n, 1))
    ramp = np.clip((t - onset) / (L / 4), 0.0, 1.0)
    x[:, :, ch["disk_write_mbps"]] += on(2) * amp * 1.5 * ramp
    x[:, :, ch["disk_read_mbps"]] += on(2) * amp * 1.0 * ramp
    x[:, :, ch["cpu_pct"]] += on(2) * amp * 0.4 * ramp
    # scanner: short periodic bursts of connections
    period = rng.integers(3, 6, size=(n, 1))
    spikes = (t + rng.integers(0, 6, size=(n, 1))) % period == 0
    x[:, :, ch["net_tx_kbps"]] += on(3) * amp * 1.6 * spikes
    x[:, :, ch["net_rx_kbps"]] += on(3) * amp * 1.2 * spikes
    if "dns_qps" in ch:
        x[:, :, ch["dns_qps"]] += on(3) * amp * 1.5 * spikes
    # exfil: one sustained upload block
    width = max(2, L // 4)
    start = rng.integers(0, L - width + 1, size=(n, 1))
    block = (t >= start) & (t < start + width)
    x[:, :, ch["net_tx_kbps"]] += on(4) * amp * 2.0 * block
    x[:, :, ch["disk_read_mbps"]] += on(4) * amp * 0.8 * block
    # benign: occasional harmless bursts on a random channel (updates, backups, builds)
    bursty = (y == 0) & (rng.random(n) < 0.5)
    rows = np.flatnonzero(bursty)
    b_start = rng.integers(0, L - 4, size=len(rows))
    b_width = rng.integers(1, 5, size=len(rows))
    b_chan = rng.integers(0, C, size=len(rows))
    b_amp = rng.uniform(1.0, 3.0, size=len(rows))
    for r, s, w, c, a in zip(rows, b_start, b_width, b_chan, b_amp, strict=True):
        x[r, s : s + w, c] += a

    scale = np.array([s for _, s, _ in catalogue])
    return (scale * np.log1p(np.exp(x + 1.5))).astype(np.float32)
