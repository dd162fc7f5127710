"""The README's commands and Python example run, with tiny settings where they train."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import MNIST, ROOT, TINY

README = (ROOT / "README.md").read_text()


def blocks(lang: str, text: str = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = blocks("bash", section("Two commands"))
    assert len(setup) == 2 and all(len(b.strip().splitlines()) == 1 for b in setup)
    assert "reparam train" in setup[0]
    test_cmd = setup[1].split("&&")[-1].strip()
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_the_setup_section_says_how_to_get_the_cpu_build():
    """On a CPU-only Linux machine PyPI's torch brings ~3 GB of CUDA wheels; the section says how not to."""
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in section("Two commands")


#: Sections whose commands run here (the others need MNIST at scale, torchrun or a GPU).
CLI_SECTIONS = ("Command line", "Richer models: hierarchies, flows, learned priors")


def cli_lines() -> list[list[str]]:
    text = "".join(b for title in CLI_SECTIONS for b in blocks("bash", section(title)))
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("reparam ")]


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory) -> Path:
    """The README's GRID, trained with tiny settings: shared, copied by the commands that read it."""
    from reparam.train import train_many

    return train_many([*TINY, "train.lr=[1e-3,3e-3]", "seed=[0,1,2]"], tmp_path_factory.mktemp("grid") / "GRID", progress=False)


@pytest.mark.parametrize("argv", cli_lines(), ids=lambda a: " ".join(a[:3]))
def test_readme_command_runs(argv, tiny_run, tmp_path, request):
    run = shutil.copytree(tiny_run, tmp_path / "RUN")  # commands may write into their run
    argv = [str(run) if a == "RUN" else a for a in argv[1:]]
    if any(a.startswith("GRID") for a in argv):  # an ensemble's folder (its members inside)
        grid = tmp_path / "GRID"
        if "--out" not in argv:
            shutil.copytree(request.getfixturevalue("tiny_grid"), grid)
        argv = [str(grid) + a.removeprefix("GRID") if a.startswith("GRID") else a for a in argv]
    if any("mnist" in a for a in argv):
        if not MNIST.is_file():
            pytest.skip("MNIST not available")
        argv = [f"data.path={MNIST}" if a.startswith("data.path=") else a for a in argv] + ["train.batch_size=1000"]
    if argv[0] == "train" and "--resume" in argv:
        argv = [a if not a.startswith("train.epochs=") else "train.epochs=3" for a in argv] + ["--quiet"]
    elif argv[0] == "train":
        argv += [*TINY, "--out", str(tmp_path / "run")]
    if argv[0] == "gradvar":
        argv += ["--replicates", "5", "--batch", "20", "--out", str(tmp_path)]
    if "--out" in argv and argv[0] in ("sample", "report"):
        argv[argv.index("--out") + 1] = str(tmp_path / Path(argv[argv.index("--out") + 1]).name)
    if argv[0] == "explore":
        return check_explorer(argv)
    proc = subprocess.run([sys.executable, "-m", "reparam", *argv], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr


def check_explorer(argv: list[str]) -> None:
    """The explorer serves its page until interrupted."""
    proc = subprocess.Popen([sys.executable, "-m", "reparam", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split(" at ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks("python")[index], "README.md", "exec"), {"__name__": "readme"})
    assert list((tmp_path / "runs").glob("*/model.safetensors"))


def test_the_selection_and_sweep_commands_run(tmp_path, capsys, monkeypatch):
    """The "Selection and sweeps" section's commands, in process, with tiny settings: the early-stopped
    run keeps its best weights, and the sweep (one trial here) writes its table and plot."""
    from tests.helpers import in_process

    monkeypatch.chdir(tmp_path)
    text = "".join(blocks("bash", section("Selection and sweeps")))
    lines = [shlex.split(line) for line in text.splitlines() if line.startswith("reparam ")]
    assert [a[1] for a in lines] == ["train", "sweep"]
    for argv in lines:
        argv = [a.replace("train.epochs=500", "train.epochs=3").replace("train.epochs=300", "train.epochs=2") for a in argv[1:]]
        argv = [a if a != "10" or argv[i - 1] != "--trials" else "1" for i, a in enumerate(argv)]
        if argv[0] == "train":
            argv += ["--out", "early"]
        tiny = [t for t in TINY[1:] if t.split("=")[0] not in {a.split("=")[0] for a in argv}]
        proc = in_process(capsys, argv[0], *tiny, *argv[1:])
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "early" / "summary.json").is_file()
    assert {"trials.csv", "trials.md", "trials.png", "trial-000"} <= {p.name for p in (tmp_path / "runs" / "sweep").iterdir()}


def test_the_disentanglement_commands_run(tmp_path, capsys, monkeypatch):
    """The "Disentanglement" section's commands, in process, on a small grid of shapes with tiny
    settings: the beta grid trains its members and one of them is scored."""
    from tests.helpers import in_process

    monkeypatch.chdir(tmp_path)
    text = "".join(blocks("bash", section("Disentanglement on data with known factors")))
    lines = [shlex.split(line.split("#")[0]) for line in text.splitlines() if line.startswith("reparam ")]
    assert [a[1] for a in lines] == ["train", "eval"]
    small = ["data.canvas=16", "data.scales=2", "data.rotations=2", "data.positions=4", *TINY]
    assert in_process(capsys, *lines[0][1:], *small).returncode == 0
    proc = in_process(capsys, *lines[1][1:], "--repetitions", "2", "--points", "100", "--votes", "50")
    assert proc.returncode == 0 and "MIG" in proc.stdout and "FactorVAE" in proc.stdout, proc.stderr
