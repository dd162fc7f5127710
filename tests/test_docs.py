"""The documentation site: every Python block runs, every ``reparam`` command runs with tiny
settings, and the Results page is built from BENCHMARKS.md.

A page's Python blocks run in order in one namespace (a page may build on its earlier
blocks), in an empty folder. A page's ``reparam`` commands run in order in an empty folder,
each with the test suite's tiny settings; commands the README's tests already run are not run
twice, and the files a command reads (MNIST, your own arrays, image folders and tables) are
made small in that folder. ``torchrun`` lines (several processes) are left to
tests/train/test_scale.py.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY
from tests.helpers import in_process
from tests.test_readme import README, blocks, check_explorer, cli_lines

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if p.parent.name != "api")


def page_id(p: Path) -> str:
    return str(p.relative_to(DOCS))


def commands(text: str) -> list[list[str]]:
    """The ``reparam`` lines of a page's bash blocks, continuation lines joined, comments dropped."""
    lines = [line.split("  #")[0].strip() for b in blocks("bash", text) for line in b.replace("\\\n", " ").splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("reparam ")]


def readme_tested() -> set[tuple[str, ...]]:
    """Commands the README's tests run: its Command line section and its tables section."""
    tables = README.split("## Your own tables\n", 1)[1].split("\n## ", 1)[0]
    return {tuple(a[1:]) for a in cli_lines()} | {tuple(a) for a in commands(tables)}


@pytest.mark.parametrize("page", [p for p in PAGES if blocks("python", p.read_text())], ids=page_id)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "docs"}
    for i, code in enumerate(blocks("python", page.read_text())):
        exec(compile(code, f"{page_id(page)}, block {i + 1}", "exec"), namespace)


def make_inputs(folder: Path) -> dict[str, str]:
    """Small stand-ins for the files the pages' commands read, and their substitutions."""
    rng = np.random.default_rng(0)
    np.savez(folder / "mnist.npz", x_train=rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), y_train=rng.integers(0, 10, 64),
             x_test=rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, 16))  # fmt: skip
    np.savez(folder / "cifar.npz", x=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8))
    (folder / "my_images").mkdir()
    from PIL import Image

    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / "my_images" / f"{i}.png")
    (folder / "my.csv").write_text("size,rating,kind\n" + "".join(f"{i * 0.7:.1f},{i % 4},{'ab'[i % 2]}\n" for i in range(40)))
    return {"../shared/data/mnist.npz": str(folder / "mnist.npz"), "configs/digits.toml": str(ROOT / "configs" / "digits.toml")}


def tiny(argv: list[str], subs: dict[str, str], run: Path) -> list[str]:
    """A page's command with the test suite's tiny settings (the page's own keys after them)."""
    argv = [subs.get(a, a) for a in argv]
    argv = [f"data.path={subs[a[10:]]}" if a.startswith("data.path=") and a[10:] in subs else a for a in argv]
    argv = [str(run) if a == "RUN" else a for a in argv]
    if argv[0] == "train" and "data.name=shapes" in argv:  # a small grid of small sprites
        argv = [*argv, "data.canvas=16", "data.scales=2", "data.rotations=2", "data.positions=4"]
    if argv[0] == "train" and "--resume" not in argv:
        return ["train", *TINY, *[a for a in argv[1:] if not a.startswith("train.epochs=")]]
    if argv[0] == "train":
        return [*argv, "--quiet"]
    if argv[0] == "eval" and "--k" in argv:
        argv[argv.index("--k") + 1] = "10"
    if argv[0] == "eval" and "--disentanglement" in argv:
        argv += ["--repetitions", "2", "--points", "90", "--votes", "30"]
    if argv[0] == "gradvar":
        argv = [a for i, a in enumerate(argv) if a != "--replicates" and argv[i - 1] != "--replicates"] + ["--replicates", "3", "--batch", "20"]
    return argv


@pytest.mark.parametrize("page", [p for p in PAGES if commands(p.read_text())], ids=page_id)
def test_commands_run(page, tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    subs = make_inputs(tmp_path)
    run = shutil.copytree(tiny_run, tmp_path / "RUN")
    done = readme_tested()
    for argv in commands(page.read_text()):
        if tuple(argv) in done:
            continue
        done.add(tuple(argv))
        argv = tiny(argv, subs, run)
        if argv[0] == "explore":
            check_explorer(argv)
            continue
        proc = in_process(capsys, *argv)
        assert proc.returncode == 0, f"reparam {' '.join(argv)}: {proc.stderr}"


def test_the_results_page_copies_every_table_of_benchmarks_md():
    from benchmarks.common import BENCHMARKS
    from benchmarks.docs_results import MARKER, render
    from benchmarks.readme_results import sections, tables

    page = (DOCS / "results.md").read_text()
    assert MARKER in page
    built = render(page)
    assert MARKER not in built
    for name, body in sections(BENCHMARKS.read_text()).items():
        assert tables(body) in built, name


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", nav, re.M))
    assert {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")} == listed
