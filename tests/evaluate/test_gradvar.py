"""The gradient-variance lab: its numbers against closed forms, the CLI, the training hook.

Closed forms (z = mu + sigma eps, eps ~ N(0, 1), f(z) = z^2, d/dmu E[f] = 2 mu):
  pathwise  g = 2 z                              Var = 4 sigma^2
  score     g = z^2 (z - mu) / sigma^2           Var = (mu^4 + 18 mu^2 sigma^2 + 15 sigma^4) / sigma^2 - 4 mu^2
(E[eps^2] = 1, E[eps^4] = 3, E[eps^6] = 15; odd moments vanish.) The lab's variance is
itself an estimate: R independent measurements give its standard error, and the check is
|mean_R - closed form| <= 4 standard errors.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.distributions import Normal

from reparam.cli import main
from reparam.evaluate.gradvar import gradient_stats, summarize
from tests.conftest import TINY

Z = 4.0
MU, SIGMA = 1.0, 0.5
CLOSED = {
    "pathwise": 4 * SIGMA**2,
    "score": (MU**4 + 18 * MU**2 * SIGMA**2 + 15 * SIGMA**4) / SIGMA**2 - 4 * MU**2,
}


def toy_step(kind: str, mu: torch.nn.Parameter):
    """One gradient estimate of -d/dmu E[z^2] into mu.grad, as the estimators build it."""

    def step() -> None:
        mu.grad = None
        q = Normal(mu, torch.tensor(SIGMA, dtype=mu.dtype))
        if kind == "pathwise":
            f = q.rsample() ** 2
        else:
            z = q.sample()
            t = (z**2).detach() * q.log_prob(z)  # the score-function surrogate
            f = z**2 + (t - t.detach())
        (-f).backward()

    return step


@pytest.mark.parametrize("kind", ["pathwise", "score"])
def test_lab_variance_matches_the_closed_form(kind):
    torch.manual_seed(11)
    mu = torch.nn.Parameter(torch.tensor(MU, dtype=torch.float64))
    runs = [summarize(gradient_stats(toy_step(kind, mu), {"encoder": [mu]}, 400)) for _ in range(25)]
    var = torch.tensor([r["variance"] for r in runs])
    se = var.std() / len(var) ** 0.5
    assert abs(float(var.mean()) - CLOSED[kind]) <= Z * float(se), (float(var.mean()), CLOSED[kind], float(se))
    snr = torch.tensor([r["snr"] for r in runs])  # |2 mu| / std; the ratio of estimates, so check loosely
    assert abs(float(snr.mean()) - 2 * MU / CLOSED[kind] ** 0.5) <= Z * float(snr.std() / len(snr) ** 0.5) + 0.02


def test_variance_ordering_pathwise_below_score():
    """Measured, not assumed: on the toy problem pathwise is ~22x less noisy (1 vs 21.75)."""
    assert CLOSED["pathwise"] < CLOSED["score"]
    torch.manual_seed(12)
    mu = torch.nn.Parameter(torch.tensor(MU, dtype=torch.float64))
    v = {k: summarize(gradient_stats(toy_step(k, mu), {"encoder": [mu]}, 2000))["variance"] for k in CLOSED}
    assert v["pathwise"] * 5 < v["score"]


# --- the command line --------------------------------------------------------------------


@pytest.fixture
def tiny_toml(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text("[model]\nhidden = [16]\n[latent]\ndim = 3\n[objective]\nname = \"iwae\"\nk = 3\n")
    return path


def test_cli_at_initialization_from_a_config(tiny_toml, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["gradvar", str(tiny_toml), "--replicates", "3", "--batch", "8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("pathwise", "stl", "dreg", "score:loo", "score:nvil", "SNR enc"):
        assert name in text
    result = json.loads((out / "gradvar.json").read_text())
    assert result["k"] == 3 and result["batch"] == 8 and result["replicates"] == 3
    assert (out / "gradvar.png").stat().st_size > 1000
    row = result["estimators"]["pathwise"]
    assert row["cosine_pathwise"] == pytest.approx(1.0)
    assert row["variance"] > 0 and set(row["groups"]) == {"encoder", "decoder"}


def test_cli_on_a_run_with_json(tiny_run, tmp_path, capsys):
    args = ["gradvar", str(tiny_run), "--estimators", "pathwise,score", "--replicates", "4", "--batch", "10"]
    assert main([*args, "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["estimators"]) == ["pathwise", "score"]
    score = result["estimators"]["score"]
    assert -1.0 <= score["cosine_pathwise"] <= 1.0 and score["seconds_per_estimate"] > 0


BAD = [
    (["--replicates", "1"], "--replicates must be >= 2"),
    (["--estimators", ","], "names no estimator"),
    (["--estimators", "pathwise,pathwise"], "names 'pathwise' twice"),
    (["--batch", "100000"], "--batch 100000 exceeds the 1500 training images"),
    (["--seed", "99999999999999999999999"], "--seed must be an integer in [0, 2**63)"),
    (["--estimators", "score:loo"], "K > 1"),
    (["--estimators", "dreg"], "objective.name=iwae"),
    (["--estimators", "magic"], "unknown objective.estimator"),
]


@pytest.mark.parametrize("extra,needle", BAD, ids=[b[1] for b in BAD])
def test_cli_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, capsys, extra, needle):
    assert main(["gradvar", str(tiny_run), "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_cli_bad_target_and_discrete_pathwise(tmp_path, capsys):
    assert main(["gradvar", str(tmp_path / "nope")]) == 2
    assert "neither a run folder nor a config file" in capsys.readouterr().err
    toml = tmp_path / "exact.toml"
    toml.write_text('[model]\nhidden = [8]\n[latent]\nfamily = "bernoulli-exact"\ndim = 4\n')
    assert main(["gradvar", str(toml), "--estimators", "pathwise", "--replicates", "2", "--out", str(tmp_path)]) == 2
    assert "supports: score" in capsys.readouterr().err
    assert main(["gradvar", str(toml), "latent.dim=0", "--out", str(tmp_path)]) == 2
    assert "latent.dim" in capsys.readouterr().err


def test_cli_overrides_a_config(tiny_toml, tmp_path, capsys):
    args = ["gradvar", str(tiny_toml), "objective.name=elbo", "objective.k=2", "--estimators", "pathwise,score:loo"]
    assert main([*args, "--replicates", "2", "--batch", "4", "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["objective"] == "elbo" and result["k"] == 2


# --- during training ------------------------------------------------------------------------


def test_gradvar_every_records_without_changing_training(tmp_path):
    """train.gradvar_every=1 writes RUN/gradvar.jsonl each epoch; the metrics are unchanged,
    because the hook draws from its own random stream."""
    from reparam import config
    from reparam.train import train

    base = [*TINY, "train.epochs=2"]
    plain = train(config.load(None, base), tmp_path / "plain")
    hooked = train(config.load(None, [*base, "train.gradvar_every=1", "train.gradvar_replicates=3"]), tmp_path / "hooked")
    assert not (plain / "gradvar.jsonl").exists()
    lines = [json.loads(line) for line in (hooked / "gradvar.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert set(lines[0]["estimators"]) == {"pathwise", "score", "score:moving_average", "score:nvil", "stl"}

    def metrics(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert metrics(plain) == metrics(hooked)


def test_cli_out_must_be_a_folder(tiny_run, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["gradvar", str(tiny_run), "--replicates", "2", "--out", str(tmp_path / "file")]) == 2
    assert "is a file; name an existing folder" in capsys.readouterr().err
