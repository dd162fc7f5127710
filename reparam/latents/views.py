"""How the report and the explorer move through a family's latent space.

Every default works in the unconstrained coordinates u = T^-1(z) of the prior's support,
T = ``torch.distributions.biject_to(prior().support)``: the identity on R^D, exp on the
positive orthant, the logistic on an interval. So a continuous family with any support
supported by ``biject_to`` needs no overrides; a family with a discrete or coupled support
(bits, one-hots, the simplex in log space, the sphere) overrides the hooks that differ.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Transform, biject_to, constraints

#: Prior draws behind the unconstrained moments when they have no closed form (seeded).
MOMENT_DRAWS = 4096


def linear_path(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 - t) a + t b for latents a, b (D,) at fractions t (T,): (T, D)."""
    t = t.to(a.dtype).unsqueeze(-1)  # (T, 1)
    return (1 - t) * a + t * b


def _base(constraint: constraints.Constraint | None) -> constraints.Constraint | None:
    """The per-coordinate constraint under ``independent(...)``."""
    return getattr(constraint, "base_constraint", constraint)


class Views:
    """Mixin of ``Family``: the hooks behind traversals, interpolations, sliders and samples."""

    dim: int

    def prior(self) -> Distribution:  # provided by Family
        raise NotImplementedError

    def unconstrained(self) -> Transform:
        """T with z = T(u), u in R^D: ``biject_to`` of the prior's support."""
        return biject_to(self.prior().support)

    def unconstrained_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of u = T^-1(z), z ~ p(z), per dimension, (D,) each.

        Closed form where T is the identity and p(z) has them; otherwise from MOMENT_DRAWS
        prior draws of a seeded stream (the global RNG is untouched).
        """
        p, t = self.prior(), self.unconstrained()
        if _base(p.support) is constraints.real:
            try:
                return p.mean.expand(self.dim), p.stddev.expand(self.dim)
            except NotImplementedError:
                pass
        anchor = p.sample()
        with torch.random.fork_rng(devices=[anchor.device] if anchor.is_cuda else []):
            torch.manual_seed(0)
            u = t.inv(p.sample((MOMENT_DRAWS,)))  # (N, D)
        return u.mean(0), u.std(0)

    def traverse(self, point: torch.Tensor, d: int, steps: int) -> torch.Tensor:
        """Latents that sweep dimension d around ``point`` (D,): (steps, D), in the support.

        Default: u_d = T^-1(point)_d + s * sd(u_d) for s evenly in [-3, 3], the other
        coordinates at the point's (on R^D: z_d = point_d + s * std_d(p)).
        """
        t = self.unconstrained()
        _, sd = self.unconstrained_moments()
        u = t.inv(point).expand(steps, self.dim).clone()  # (steps, D)
        s = torch.linspace(-3.0, 3.0, steps, dtype=point.dtype, device=point.device)
        u[:, d] = u[:, d] + s * sd[d].to(point)
        return t(u)

    def interpolation_kinds(self) -> tuple[str, ...]:
        """Names ``interpolate`` accepts; 'spherical' where p(z) is centred at 0 on R^D."""
        p = self.prior()
        try:
            centred = _base(p.support) is constraints.real and bool((p.mean == 0).all())
        except NotImplementedError:  # no closed-form mean: not a centred prior we know of
            centred = False
        return ("linear", "spherical") if centred else ("linear",)

    def check_kind(self, kind: str) -> None:
        """ValueError unless ``interpolate`` accepts ``kind`` for this family."""
        if kind not in self.interpolation_kinds():
            raise ValueError(f"{getattr(self, 'name', '')}: interpolation {kind!r} is not one of {self.interpolation_kinds()}")

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, kind: str = "linear") -> torch.Tensor:
        """A path from latent a (D,) to b (D,) at fractions t (T,): (T, D), in the support.

        'linear' is T((1 - t) T^-1(a) + t T^-1(b)), a straight line in the unconstrained
        coordinates; 'spherical' is the slerp of White (2016), which keeps the norm typical
        of a Gaussian prior.
        """
        self.check_kind(kind)
        if kind == "linear":
            tr = self.unconstrained()
            return tr(linear_path(tr.inv(a), tr.inv(b), t))
        t = t.to(a.dtype).unsqueeze(-1)  # (T, 1)
        cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
        omega = torch.arccos(cos.clamp(-1.0, 1.0))
        if torch.sin(omega) < 1e-6:  # (anti)parallel: no unique great circle, go straight
            return (1 - t) * a + t * b
        return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)

    def constrain(self, z: torch.Tensor) -> torch.Tensor:
        """The nearest latent in the support to a hand-edited z (*batch, D) (explorer sliders).

        Default: each coordinate clamped into the support's bounds (open ends kept a float's
        width inside); latents already in the support are left as they are. A support
        without per-coordinate bounds must override this.
        """
        support = _base(self.prior().support)
        if support is constraints.real:
            return z
        lo, hi = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
        if lo is None and hi is None:
            raise NotImplementedError(f"{getattr(self, 'name', '')}: the support {support} has no bounds; override constrain")
        eps, tiny = torch.finfo(z.dtype).eps, torch.finfo(z.dtype).tiny
        if lo is not None:
            z = torch.maximum(z, torch.as_tensor(lo + max(tiny, eps * abs(lo)), dtype=z.dtype, device=z.device))
        if hi is not None:
            z = torch.minimum(z, torch.as_tensor(hi - max(tiny, eps * abs(hi)), dtype=z.dtype, device=z.device))
        return z

    def sample_prior(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """n draws from p(z) at a temperature: (n, D).

        Default: T(m + temperature (u - m)) with u = T^-1(z), z ~ p(z), m the mean of u
        (on R^D: mean + T (z - mean), the Gaussian's N(0, T^2 I)). Temperature 1 is p(z).
        """
        p = self.prior()
        z = p.sample((n,))  # (n, D); pictures need no gradient
        if temperature == 1.0:
            return z
        t = self.unconstrained()
        m, _ = self.unconstrained_moments()
        return t(m.to(z) + temperature * (t.inv(z) - m.to(z)))
