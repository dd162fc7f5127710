"""train.threads: fixed counts, and auto's timed trials (on a fake clock: no test is timed)."""

from __future__ import annotations

import math

import pytest
import torch

from reparam import devices


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cpus, expected", [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8])])
def test_candidates_double_up_to_the_cpus(cpus, expected):
    assert devices.candidates(cpus) == expected


@pytest.mark.parametrize(
    "seconds, best",
    [({1: 1.0, 2: 0.5}, 2), ({1: 1.0, 2: 6.5}, 1), ({1: 1.0, 2: 0.97}, 1), ({1: 1.0, 2: 0.6, 4: 0.58}, 2), ({1: 2.0, 2: 1.0, 4: 0.5}, 4)],
)
def test_the_fastest_count_wins_and_near_ties_go_to_fewer_threads(seconds, best):
    assert devices.fastest(seconds) == best


class FakeMachine:
    """A clock, and a trial whose duration depends on the thread count it runs with."""

    def __init__(self, seconds: dict[int, float]):
        self.now, self.seconds, self.calls = 0.0, seconds, 0

    def clock(self) -> float:
        return self.now

    def trial(self) -> None:
        self.calls += 1
        self.now += self.seconds[torch.get_num_threads()]


@pytest.mark.parametrize("seconds, best", [({1: 2**-6, 2: 2**-7}, 2), ({1: 2**-6, 2: 2**-3}, 1)])  # binary fractions: the fake clock adds them exactly
def test_auto_keeps_the_count_its_trials_found_fastest(monkeypatch, seconds, best):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices, "cpus_available", lambda: 2)
    machine = FakeMachine(seconds)
    threads = devices.Threads("auto", clock=machine.clock)
    assert threads.due()
    assert threads.tune(machine.trial) == best and torch.get_num_threads() == best
    # a warm-up, then three measurements per count, each repeating the trial for MIN_MEASURE_SECONDS at least
    assert machine.calls == sum(1 + 3 * math.ceil(devices.MIN_MEASURE_SECONDS / s) for s in seconds.values())
    assert threads.history[0] == pytest.approx(seconds, rel=1e-9)
    assert not threads.due()  # trials again after RETUNE_SECONDS, or later so they stay under TRIAL_SHARE
    machine.now += max(devices.RETUNE_SECONDS, machine.now / devices.TRIAL_SHARE)
    assert threads.due()


def test_a_slow_trial_is_repeated_less_often(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices, "cpus_available", lambda: 2)
    machine = FakeMachine({1: 1.0, 2: 1.0})  # 8 s of trials
    threads = devices.Threads("auto", clock=machine.clock)
    threads.tune(machine.trial)
    assert threads.interval == pytest.approx(8.0 / devices.TRIAL_SHARE)


@pytest.mark.parametrize(
    "setting, env, tunable, cpus",
    [(1, {}, True, 2), (0, {}, True, 2), ("auto", {"OMP_NUM_THREADS": "1"}, True, 2), ("auto", {}, False, 2), ("auto", {}, True, 1)],
)
def test_auto_measures_only_where_the_choice_is_ours(monkeypatch, setting, env, tunable, cpus):
    """A fixed count, torch's default (0), OMP_NUM_THREADS, torchrun or a GPU (not tunable), one CPU: no trials."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(devices, "cpus_available", lambda: cpus)
    assert not devices.Threads(setting, tunable=tunable).due()


def test_a_fixed_count_is_set():
    devices.Threads(1)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("extra", [[], ["model.condition=label"], ["latent.dim=4", "model.stochastic=[2]"]], ids=["vae", "conditional", "hierarchical"])
def test_the_trial_leaves_training_bit_for_bit_unchanged(extra, tmp_path):
    """auto's trial runs the networks forward and backward; a run that makes trials between its
    steps ends on the same weights as one that does not, and no gradient is left behind."""
    from reparam import data as data_mod
    from reparam.model import build
    from reparam.train.loop import Trainer
    from tests.conftest import tiny_config

    finals = []
    for with_trials in (False, True):
        cfg = tiny_config("train.epochs=1", *extra)
        data = data_mod.load(cfg.data)
        torch.manual_seed(0)
        classes = len(data.classes) if "model.condition=label" in extra else None
        t = Trainer(cfg, build(cfg, data.x_shape, classes=classes), data, tmp_path / f"run{with_trials}")
        for _ in range(6):
            if with_trials:
                t.threads.trial()
                assert all(p.grad is None for p in t.model.parameters())
            t.advance()
        finals.append({k: v.clone() for k, v in t.model.state_dict().items()})
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_a_run_with_the_default_auto_threads_trains_and_resumes(tmp_path, monkeypatch):
    """The default (the suite pins train.threads=1 for bit-for-bit comparisons): trials run
    during training and the run finishes, is summarized and resumes."""
    from reparam import runs
    from reparam.train import resume, train
    from tests.conftest import tiny_config

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices, "cpus_available", lambda: 2)
    run = train(tiny_config("train.threads=auto", "train.epochs=1"), tmp_path / "run")
    assert runs.read_config(run).train.threads == "auto"
    resume(run, epochs=2, progress=False)
    assert runs.read_json(run / runs.SUMMARY)["epochs"] == 2
