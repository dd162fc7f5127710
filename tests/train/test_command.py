"""``reparam train``'s own text: the final line, and what --resume takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from reparam.errors import ReparamError
from reparam.train.command import resume_settings, summary_line

SUMMARY = {"elbo": -20.5, "nll": 19.25, "nll_se": 0.5, "k": 100, "n": 300, "n_test": 300, "epochs": 2, "steps": 30, "train_seconds": 1.5}


def test_the_final_line_gives_the_classification_error_with_its_standard_error():
    summary = {**SUMMARY, "labels": "latent: log p(x) sums over the classes", "classification_error": 0.125, "classification_error_se": 0.0191}
    assert "classification error 12.5 ± 1.9%" in summary_line(summary, Path("RUN"))


@pytest.mark.parametrize(
    "counts, text",
    [({"epochs": 1, "steps": 15}, "1 epoch in"), ({"epochs": 2}, "2 epochs in"),
     ({"passes": 1.0, "steps": 1}, "1 pass (1 step) in"), ({"passes": 1.5, "steps": 23}, "1.5 passes (23 steps) in")],
)  # fmt: skip
def test_one_epoch_or_pass_is_singular(counts, text):
    assert text in summary_line({**SUMMARY, **counts}, Path("RUN"))


@pytest.mark.parametrize(
    "setting, needle",
    [("train.epochs=1e9", "train.epochs must be a whole number of epochs, got 1e9 (write 1000000000)"),
     ("train.epochs=2.5", "train.epochs must be a whole number of epochs, got 2.5"),
     ("train.epochs=many", "train.epochs must be a whole number of epochs, got 'many'"),
     ("train.epochs=0", "train.epochs must be >= 1, got 0")],
)  # fmt: skip
def test_resume_says_what_is_wrong_with_an_epoch_count(setting, needle):
    with pytest.raises(ReparamError) as e:
        resume_settings([setting])
    assert needle in str(e.value) and "takes only" not in str(e.value)


def test_resume_still_names_the_two_settings_it_takes():
    assert resume_settings(["train.epochs=5", "train.budget=90s"]) == {"epochs": 5, "budget": "90s"}
    with pytest.raises(ReparamError, match="--resume takes only train.epochs=N and train.budget=T"):
        resume_settings(["train.lr=1"])
