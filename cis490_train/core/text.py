"""How the fleet writes durations and progress for people: one function for each, whether the
line goes to a terminal, to Flower or onto the results page."""

from __future__ import annotations

from typing import Any


def duration(seconds: float | None, words: bool = False, none: str = "") -> str:
    """`4.2s`, `1m05s`, `2h03m` for tables; with `words`, `4.2 s`, `1 min 5 s`, `2 h 3 min` for pages."""
    if seconds is None:
        return none
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s" if words else f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s" if words else f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if words else f"{hours}h{minutes:02d}m"


def progress_summary(p: dict[str, Any], eta: bool = True) -> str:
    """A trainer progress object in words: `train 3/10, loss 0.41, val_macro_f1 0.712, eta 12.0s`."""
    bits = []
    if p.get("epochs"):
        bits.append(f"{p.get('phase') or 'epoch'} {p.get('epoch')}/{p['epochs']}")
    elif p.get("steps"):
        bits.append(f"step {p.get('step')}/{p['steps']}")
    elif p.get("phase"):
        bits.append(str(p["phase"]))
    if p.get("loss") is not None:
        bits.append(f"loss {p['loss']:.4g}")
    if p.get("metric") is not None:
        bits.append(f"{p.get('metric_name') or 'metric'} {p['metric']:.3f}")
    if eta and p.get("eta_s") is not None:
        bits.append(f"eta {duration(p['eta_s'])}")
    return ", ".join(bits)


def progress_line(meta: dict[str, Any]) -> str:
    """The same in one line with the job and its host, for monitors that show one text field (Flower)."""
    who = str(meta.get("name") or meta.get("job_id") or "")
    where = f"on {meta['host']}" if meta.get("host") else ""
    return " · ".join(bit for bit in (who, progress_summary(meta), where) if bit)
