"""Sharing on the Hub: the model card, what a push uploads, hf:// specs, and the offline failures.

A successful upload and download are not exercised: huggingface_hub has no local stand-in for
the Hub (its endpoint is the Hub's HTTP API; offline mode only reads a cache that a real
download filled). What is checked: the files a push would upload (against the Hub library's own
pattern filter, which the download's ``allow_patterns`` uses), that a folder holding only those
files loads and evaluates as the run does, and that the real client's calls fail in one line
without a token, with no Hub answering (a closed local port) and offline.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from reparam import config, runs
from reparam.errors import RunError
from reparam.share import card, hub
from tests.helpers import assert_user_error, in_process


def test_the_card_carries_the_runs_numbers_with_their_errors_and_the_command_that_reproduces_it(tiny_run):
    text = card.render(tiny_run, "someone/tiny-vae")
    summary = json.loads((tiny_run / "summary.json").read_text())
    head, _, body = text.partition("\n---\n")
    assert head.splitlines()[:2] == ["---", "library_name: reparam"] and "- latent-gaussian" in head and "- nll" in head
    assert f"| NLL (importance sampled) | {summary['nll']:.3f} ± {summary['nll_se']:.3f} nats |" in body
    assert f"| I(x; z) | {summary['mi']:.3f} ± {summary['mi_se']:.3f} nats |" in body
    assert f"k = {summary['k']} importance samples" in body and "`data.name=digits`" in body
    assert 'reparam.load("hf://someone/tiny-vae")' in body and "reparam eval hf://someone/tiny-vae" in body
    command = body.split("## Reproduce\n\n```\n")[1].split("\n```")[0]
    words = shlex.split(command)
    assert words[:2] == ["reparam", "train"]
    assert config.load(None, words[2:]).to_dict() == json.loads((tiny_run / "config.json").read_text())


def test_a_push_carries_what_load_and_eval_read_and_no_checkpoint(tiny_run, tmp_path, capsys):
    files = hub.shared_files(tiny_run)
    assert {"config.json", "model.safetensors", "state.json", "summary.json"} <= set(files)
    assert (tiny_run / "checkpoints").is_dir() and not any(f.startswith("checkpoints/") for f in files)
    assert {Path(f).suffix for f in files} <= {".json", ".jsonl", ".safetensors", ".png", ".csv", ".html"}  # never a pickle
    filter_repo_objects = pytest.importorskip("huggingface_hub.utils").filter_repo_objects
    everything = [p.relative_to(tiny_run).as_posix() for p in tiny_run.rglob("*") if p.is_file()]
    assert sorted(filter_repo_objects(everything, allow_patterns=list(hub.SHARED))) == files  # what a download fetches
    pulled = tmp_path / "pulled"  # the folder a pull of the pushed repository holds
    for f in files:
        (pulled / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_run / f, pulled / f)
    (pulled / hub.CARD).write_text(card.render(tiny_run, "someone/tiny-vae"))
    a, b = runs.load(tiny_run).state_dict(), runs.load(pulled).state_dict()
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    evals = [in_process(capsys, "eval", str(d), "--k", "5", "--json") for d in (tiny_run, pulled)]
    assert evals[0].returncode == 0 and evals[0].stdout == evals[1].stdout
    dry = in_process(capsys, "push", str(tiny_run), "someone/tiny-vae", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.split() == [*files, "README.md"]


@pytest.mark.parametrize("spec, parsed", [("hf://u/r", ("u/r", None)), ("hf://u-1/r.v2@main", ("u-1/r.v2", "main")), ("hf://u/r@a1b2c3", ("u/r", "a1b2c3"))])
def test_hub_specs_parse(spec, parsed):
    assert hub.is_hub(spec) and hub.parse(spec) == parsed


@pytest.mark.parametrize("spec", ["hf://u", "hf://u/r/x", "hf://u/r@", "hf://../r", "hf:///r"])
def test_a_malformed_hub_spec_is_refused_naming_the_form(spec):
    with pytest.raises(RunError, match="hf://user/repo"):
        hub.parse(spec)


def test_push_and_pull_fail_in_one_line_without_a_token_a_hub_or_a_network(tiny_run, tmp_path, monkeypatch, capsys):
    constants = pytest.importorskip("huggingface_hub.constants")
    for name in ("HF_TOKEN", "HF_OIDC_RESOURCE", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no stored token either
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))  # an empty cache
    assert_user_error(in_process(capsys, "push", str(tiny_run), "someone/tiny-vae"), "no Hugging Face token")
    assert_user_error(in_process(capsys, "push", str(tiny_run), "someone/tiny-vae@dev"), "drop @dev")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_token")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the real client, a local port where no Hub answers
    assert_user_error(in_process(capsys, "push", str(tiny_run), "someone/tiny-vae"), "push to someone/tiny-vae failed")
    assert_user_error(in_process(capsys, "eval", "hf://someone/tiny-vae", "--k", "5"), "not in the local Hub cache")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert_user_error(in_process(capsys, "push", str(tiny_run), "someone/tiny-vae"), "HF_HUB_OFFLINE is set")
    assert_user_error(in_process(capsys, "eval", "hf://someone/tiny-vae", "--k", "5"), "not in the local Hub cache")
    with pytest.raises(RunError, match="not in the local Hub cache"):
        runs.load("hf://someone/tiny-vae@v1")


def test_the_readme_commands_of_this_section_parse():
    """The README's push, eval hf://, encode and export lines name real options (they are run above, not from the README)."""
    import re

    from reparam import cli
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text().split("## Share, encode, export\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("reparam ")]
    assert {c[0] for c in commands} == {"push", "eval", "encode", "export"}
    for argv in commands:
        assert callable(cli.parse(argv).func)
