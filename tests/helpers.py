"""Running the command line from tests: in this process or in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reparam import cli


def python(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` in a fresh interpreter (``env`` adds to this process's environment)."""
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=full, timeout=300)


def reparam(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``reparam ARGS`` end to end, through the interpreter."""
    return python("-m", "reparam", *args, cwd=cwd, env=env)


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """Run the CLI's main() here (no interpreter start-up); same exit code and stderr."""
    try:
        code = cli.main(list(args))
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_user_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    """Bad input: exit code 2 and one line on stderr that names the problem, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and needle in lines[0], lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder and its bytes (to show that a failed command changed nothing)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_bad_config(overrides: list[str], needle: str, tmp_path: Path, capsys) -> None:
    """A bad setting: ConfigError naming it from config.load, and from ``reparam train`` one line,
    exit 2, no run folder."""
    import pytest

    from reparam import config
    from reparam.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        config.load(None, overrides)
    assert needle in str(info.value)
    assert_user_error(in_process(capsys, "train", *overrides, "--out", str(tmp_path / "r")), needle)
    assert not (tmp_path / "r").exists()
