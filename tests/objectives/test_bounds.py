"""Objectives: warm-up schedule, free bits, IWAE bound and its normalized weights."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from reparam import latents, objectives
from reparam.config import ObjectiveConfig
from reparam.errors import ConfigError
from reparam.model import build
from tests.conftest import tiny_config


def _obj(**kw) -> ObjectiveConfig:
    cfg = ObjectiveConfig(**kw)
    cfg.validate()
    return cfg


@pytest.mark.parametrize(
    "warmup, beta, step, expected",
    [(0, 1.0, 0, 1.0), (0, 0.5, 7, 0.5), (100, 1.0, 0, 0.0), (100, 1.0, 25, 0.25),
     (100, 2.0, 50, 1.0), (100, 1.0, 100, 1.0), (100, 1.0, 10_000, 1.0)],
)  # fmt: skip
def test_warmup_schedule(warmup, beta, step, expected):
    cfg = _obj(warmup=warmup, beta=beta)
    assert objectives.beta_at(cfg, step) == pytest.approx(expected)
    assert objectives.call_kwargs(cfg, step)["beta"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "warmup, progress, expected",
    [("25%", 0.0, 0.0), ("25%", 0.125, 1.0), ("25%", 0.25, 2.0), ("25%", 1.0, 2.0), ("100%", 0.5, 1.0), (" 2.5 % ", 0.0125, 1.0), (".5%", 0.01, 2.0)],
)  # fmt: skip
def test_warmup_as_a_share_of_training_follows_the_progress(warmup, progress, expected):
    cfg = _obj(warmup=warmup, beta=2.0)
    assert objectives.beta_at(cfg, 10**9, progress) == pytest.approx(expected)  # the step count plays no part
    assert objectives.call_kwargs(cfg, 0, progress=progress)["beta"] == pytest.approx(expected)
    assert objectives.schedule_warning(cfg, 1) is None  # it ends with training, however short
    with pytest.raises(ValueError, match="needs the training progress"):
        objectives.beta_at(cfg, 0)


@pytest.mark.parametrize("warmup", ["0%", "150%", "10", "ten%", "-5%", "10%%", 2.5, -1])
def test_a_bad_warmup_is_one_line_naming_both_forms(warmup):
    with pytest.raises(ConfigError) as e:
        _obj(warmup=warmup)
    assert "objective.warmup" in str(e.value) and "10%" in str(e.value) and "\n" not in str(e.value)


def test_warmup_longer_than_training_warns_only():
    cfg = _obj(warmup=1000)
    assert objectives.schedule_warning(cfg, 1000) is None
    assert "longer than the 10 steps" in objectives.schedule_warning(cfg, 10)


@pytest.mark.parametrize(
    "kw, message",
    [({"k": 0}, "objective.k"), ({"free_bits": -0.1}, "free_bits"), ({"warmup": -1}, "warmup"),
     ({"free_bits_group": 0}, "free_bits_group"), ({"name": "iwae", "free_bits": 0.5}, "has none")],
)  # fmt: skip
def test_bad_objective_config(kw, message):
    with pytest.raises(ConfigError, match=message):
        _obj(**kw)


def _posterior(loc_scale: list[float], batch: int = 64):
    """A Gaussian q over 4 dims whose KL grows with ``loc_scale[d]``; raw requires grad."""
    fam = latents.get("gaussian", 4)
    g = torch.Generator().manual_seed(1)
    loc = torch.randn(batch, 4, generator=g) * torch.tensor(loc_scale)
    raw = torch.cat([loc, torch.zeros(batch, 4)], -1).requires_grad_()
    return fam, raw, fam.posterior(raw)


def test_free_bits_floor_per_dimension():
    lam = 0.5
    fam, raw, q = _posterior([0.1, 0.2, 3.0, 4.0])  # dims 0, 1 far below lambda; 2, 3 above
    per_dim = fam.kl_per_dim(q).detach()
    fb = objectives.free_bits_kl(SimpleNamespace(kl_per_dim=fam.kl_per_dim, latent_dim=fam.dim), q, fam.kl(q), lam)
    expected = torch.clamp(per_dim.mean(0), min=lam).sum()  # Kingma et al. 2016, eq. 15
    assert fb.shape == (64,)
    assert float(fb.detach().mean()) == pytest.approx(float(expected), rel=1e-5)
    fb.mean().backward()
    loc_grad = raw.grad[:, :4]
    assert torch.all(loc_grad[:, :2] == 0)  # below the floor: no gradient
    assert torch.all(loc_grad[:, 2:].abs().sum(0) > 0)


def test_free_bits_groups_and_coupled_fallback():
    fam, raw, q = _posterior([0.1, 3.0, 0.1, 0.1])
    kl = fam.kl(q)
    grouped = objectives.free_bits_kl(SimpleNamespace(kl_per_dim=fam.kl_per_dim, latent_dim=fam.dim), q, kl, 0.5, group=2)
    per_group = fam.kl_per_dim(q).mean(0).view(2, 2).sum(-1)
    assert float(grouped.detach().mean()) == pytest.approx(float(per_group.detach().clamp(min=0.5).sum()), rel=1e-5)
    with pytest.raises(ConfigError, match="divide"):
        objectives.free_bits_kl(SimpleNamespace(kl_per_dim=fam.kl_per_dim, latent_dim=fam.dim), q, kl, 0.5, group=3)
    coupled = SimpleNamespace(kl_per_dim=lambda q: None, latent_dim=4)
    total = objectives.free_bits_kl(coupled, q, kl, 10.0)  # floor lambda * D = 40 nats on the total
    assert torch.allclose(total, torch.full_like(total, 40.0))


@pytest.fixture(scope="module")
def model_and_x():
    from reparam import data

    cfg = tiny_config("model.hidden=[16]", "latent.dim=3")
    d = data.load(cfg.data)
    torch.manual_seed(0)
    return build(cfg, d.x_shape), d.test[:64]


def test_same_term_keys_and_shapes(model_and_x):
    model, x = model_and_x
    for name in objectives.OBJECTIVES:
        bound, terms = objectives.lookup(name)(model, x, **objectives.call_kwargs(_obj(name=name, k=3), 0))
        assert bound.shape == (len(x),)
        assert {"elbo", "log_px_z", "kl"} <= set(terms)
        assert all(t.shape == (len(x),) for t in terms.values())


def test_elbo_free_bits_changes_bound_not_terms(model_and_x):
    model, x = model_and_x
    torch.manual_seed(3)
    plain, t1 = objectives.elbo(model, x)
    torch.manual_seed(3)
    floored, t2 = objectives.elbo(model, x, free_bits=5.0)
    assert torch.allclose(t1["kl"], t2["kl"]) and float(floored.detach().mean()) < float(plain.detach().mean())


def test_normalized_weights_log_space():
    lw = torch.tensor([[1e4, -1e4], [1e4 - math.log(3), -1e4 + 1.0]], dtype=torch.float64)  # exp() overflows
    w = objectives.normalized_weights(lw)
    assert torch.allclose(w.sum(0), torch.ones(2, dtype=torch.float64)) and not w.requires_grad
    assert float(w[0, 0]) == pytest.approx(0.75)


def test_iwae_gradient_is_weighted_score_of_log_weights(model_and_x):
    """grad L_K = sum_k w~_k grad log w_k with detached weights (Burda et al. 2016, eq. 8)."""
    model, x = model_and_x
    torch.manual_seed(4)
    lw = objectives.log_weights(model, x, 7)  # (K, B)
    params = [p for p in model.parameters()]
    bound = (torch.logsumexp(lw, 0) - math.log(7)).sum()
    surrogate = (objectives.normalized_weights(lw) * lw).sum()
    g1 = torch.autograd.grad(bound, params, retain_graph=True)
    g2 = torch.autograd.grad(surrogate, params)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _mean_se(t: torch.Tensor) -> tuple[float, float]:
    t = t.double()
    return float(t.mean()), float(t.std() / math.sqrt(t.numel()))


@torch.no_grad()
def test_iwae_bound_above_elbo_and_rising_with_k(model_and_x):
    model, x = model_and_x
    torch.manual_seed(5)
    reps = 20
    bounds = {k: torch.stack([objectives.iwae(model, x, k=k)[0] for _ in range(reps)]).mean(0) for k in (1, 5, 50)}
    elbo = torch.stack([objectives.elbo(model, x)[0] for _ in range(reps)]).mean(0)
    m, se = _mean_se(bounds[1] - elbo)  # L_1 is the ELBO: equal in expectation
    assert abs(m) < 4 * se
    for lo, hi in ((1, 5), (5, 50)):
        m, se = _mean_se(bounds[hi] - bounds[lo])
        assert m > 4 * se, (lo, hi, m, se)


def test_iwae_warmup_tempers_only_the_trained_bound(model_and_x):
    model, x = model_and_x
    torch.manual_seed(6)
    bound, terms = objectives.iwae(model, x, k=4, beta=1.0)
    assert torch.equal(bound, terms["iwae"])
    torch.manual_seed(6)
    tempered, terms2 = objectives.iwae(model, x, k=4, beta=0.0)
    assert torch.allclose(terms2["iwae"], terms["iwae"]) and not torch.allclose(tempered, bound)


def _fb_posterior():
    """32 examples, 2 dims: dim 0 informative in the first half only (KL ~ 2 vs ~ 0.02), dim 1 never."""
    fam = latents.get("gaussian", 2)
    loc = torch.zeros(32, 2)
    loc[:16, 0] = 2.0
    loc[16:, 0] = 0.2
    loc[:, 1] = 0.1
    return fam, fam.posterior(torch.cat([loc, torch.zeros(32, 2)], -1))


def _model(fam):
    """The part of a model free bits read: the KL per dimension and the latent size."""
    return SimpleNamespace(kl_per_dim=fam.kl_per_dim, latent_dim=fam.dim)


def _free_bits_worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from reparam import distributed

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    fam, q = _fb_posterior()
    shard = slice(16 * rank, 16 * (rank + 1))
    q_r = fam.posterior(torch.cat([q.base_dist.loc[shard], q.logvar[shard]], -1))
    fb = objectives.FreeBits(_model(fam), q_r, fam.kl(q_r), 0.5, batch_mean=lambda t: distributed.global_mean(t, 32))
    torch.save({"above": fb.above, "penalty": fb.penalty()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_free_bits_mask_is_chosen_on_the_global_batch_under_two_processes(tmp_path):
    """Two gloo processes, 16 examples each: the mask is the single-process mask of all 32
    (dim 0 above the floor), although the second process alone would put dim 0 below it."""
    fam, q = _fb_posterior()
    single = objectives.FreeBits(_model(fam), q, fam.kl(q), 0.5)
    alone = objectives.FreeBits(_model(fam), fam.posterior(torch.cat([q.base_dist.loc[16:], q.logvar[16:]], -1)), fam.kl(q)[16:], 0.5)
    assert single.above.tolist() == [True, False] and alone.above.tolist() == [False, False]
    torch.multiprocessing.spawn(_free_bits_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for p in parts:
        assert p["above"].tolist() == single.above.tolist()
    torch.testing.assert_close(torch.cat([p["penalty"] for p in parts]), single.penalty().detach())


@torch.no_grad()
def test_renyi_bound_is_iwae_at_alpha_0_the_elbo_at_1_and_falls_between(model_and_x):
    """Li & Turner (2016): on the same draws, L_0 = L_K (IWAE), L_1 = mean_k log w_k (the ELBO
    estimate), and L_alpha falls as alpha rises, for every example."""
    model, x = model_and_x
    values = {}
    for alpha in (0.0, 0.3, 0.7, 1.0):
        torch.manual_seed(7)
        values[alpha] = objectives.renyi(model, x, k=6, alpha=alpha)[0]
    torch.manual_seed(7)
    iwae, _ = objectives.iwae(model, x, k=6)
    torch.manual_seed(7)
    lw = objectives.log_weights(model, x, 6)
    torch.testing.assert_close(values[0.0], iwae)
    torch.testing.assert_close(values[1.0], lw.mean(0))
    for lo, hi in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0)):
        assert (values[lo] >= values[hi] - 1e-5).all()


@pytest.mark.parametrize("alpha", [-0.5, 1.5, "x"])
def test_renyi_alpha_outside_zero_one_is_refused(alpha):
    with pytest.raises(ConfigError, match="objective.alpha must be a number in"):
        ObjectiveConfig(name="renyi", k=3, options={"alpha": alpha}).validate()
