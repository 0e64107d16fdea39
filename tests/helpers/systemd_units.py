"""Read a systemd service as the manager would start it: its command line and environment.

Only what the project's units use: `[Service]` lines of the unit and then its drop-ins,
`Environment=` (one assignment per line), `EnvironmentFile=` (which overrides `Environment=`),
the specifiers %i, %H and %%, `${VAR}` in `ExecStart=`/`ExecStartPre=`, and `$$` for a literal `$`.
"""

from __future__ import annotations

import re
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ServiceCommand:
    argv: list[str]
    env: dict[str, str]
    pre: list[list[str]]


def service_lines(unit: Path, dropin_dir: Path | None = None) -> list[tuple[str, str]]:
    """(key, value) of every `[Service]` line, the unit's first and then each drop-in's, sorted by name."""
    files = [unit]
    if dropin_dir is not None and dropin_dir.is_dir():
        files += sorted(dropin_dir.glob("*.conf"))
    lines: list[tuple[str, str]] = []
    for path in files:
        section = None
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "Service":
                key, _, value = line.partition("=")
                lines.append((key.strip(), value.strip()))
    return lines


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def service_command(unit: Path, instance: str = "", dropin_dir: Path | None = None) -> ServiceCommand:
    def specifiers(text: str) -> str:
        return re.sub(r"%[iH%]", lambda m: {"%i": instance, "%H": socket.gethostname(), "%%": "%"}[m.group()], text)

    environment: dict[str, str] = {}
    from_files: dict[str, str] = {}
    exec_start: list[str] = []
    exec_pre: list[str] = []
    for key, value in service_lines(unit, dropin_dir):
        if key == "Environment":
            name, _, val = specifiers(value).partition("=")
            assert " " not in val, f"one assignment per Environment= line: {value}"
            environment[name] = val
        elif key == "EnvironmentFile":
            path = Path(specifiers(value).lstrip("-"))
            if path.exists():  # a missing one stops a real start; here the command is still worth reading
                from_files.update(read_env_file(path))
        elif key == "ExecStart":
            exec_start = [value] if value else []
        elif key == "ExecStartPre":
            exec_pre.append(value)
    assert len(exec_start) == 1, f"{unit}: expected one ExecStart= line"
    env = {**environment, **from_files}

    def argv(line: str) -> list[str]:
        words = shlex.split(specifiers(line))
        out = []
        for word in words:
            assert "$" not in _VAR.sub("", word.replace("$$", "")), f"bare $VAR in {line!r}: use ${{VAR}}"
            out.append(_VAR.sub(lambda m: env[m.group(1)], word).replace("$$", "$"))
        return out

    return ServiceCommand(argv=argv(exec_start[0]), env=env, pre=[argv(line) for line in exec_pre])
