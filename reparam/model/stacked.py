"""M models of the same shapes as one: their networks' weights stacked, every operator shared.

``Stacked(models)`` is a VAE whose batch has a member dimension in front of the examples:
x (M, B, *x_shape) -> q(z|x) batch (M, B) -> z (K, M, B, D) -> p(x|z) batch (K, M, B), so
a bound's per-example terms come out (M, B) and member m's loss is ``-bound[m].mean()``.
Each network runs once for all members (``torch.func.functional_call`` under ``vmap``:
member m's slice of the stacked weights on member m's rows), so the fixed cost of an
operator call is paid once for M models. The stacked weights are leaf tensors (M, ...);
the members' own parameters become views of their slices (``bind``), so a member's
``state_dict``, evaluation and checkpoints read the weights the stack trains, without a copy.

Noise stays each member's own: ``rsample`` draws member m's z from member m's generator
state (``draws``), the values a member alone would draw, in the same order. What can be
stacked: a model whose parameters all live in its encoder and decoder, without buffers
(``stackable`` says why not otherwise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.distributions import Distribution
from torch.func import functional_call, stack_module_state, vmap

from .vae import VAE

#: Draws member m's z: (m, a function that draws from member m's distribution) -> z (*S, B, D).
Draws = Callable[[int, Callable[[], torch.Tensor]], torch.Tensor]


def stackable(models: Sequence[nn.Module]) -> str | None:
    """Why these models cannot be stacked (one line), or None: every parameter in the encoder or the
    decoder, no buffers there, and the same parameter names and shapes in every member."""
    first = models[0]
    if not isinstance(first, VAE):
        return "only a one-layer VAE stacks"
    nets = [first.encoder, first.decoder]
    inside = {id(p) for net in nets for p in net.parameters()}
    if any(id(p) not in inside for p in first.parameters()):
        return "the model has parameters outside its encoder and decoder (a learned prior, a flow or a likelihood's own)"
    if any(True for net in nets for _ in net.buffers()):
        return "the networks keep buffers"
    shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in models]
    if any(s != shapes[0] for s in shapes):
        return "the members' networks differ in shape"
    return None


class Vmapped(nn.Module):
    """One network's M copies: (*S, M, B, *event) -> (*S, M, B, *out), member m's weights on its rows.

    ``event_dims``: the input's dimensions per example (the member dimension is the one before
    the examples). Each member sees exactly the shapes it sees alone, (*S, B, *event)."""

    def __init__(self, net: nn.Module, params: dict[str, torch.Tensor], event_dims: int):
        super().__init__()
        self.net = [net]  # a plain list: the template's parameters are not this module's
        self.params, self.event_dims = params, event_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.dim() - self.event_dims - 2
        net = self.net[0]

        def one(params: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
            return functional_call(net, params, (rows,))

        return vmap(one, in_dims=(0, dim), out_dims=dim)(self.params, x)


class PerMember(Distribution):
    """q(z|x) of M members, batch (M, B): densities from the stacked distribution, draws from each
    member's own stream (``draws``) so that member m's z is the one it would draw alone."""

    has_rsample = True

    def __init__(self, base: Distribution, members: Sequence[Callable[[], Distribution]], draws: Draws):
        self.base, self.members, self.draws = base, members, draws
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)
        self.has_rsample = base.has_rsample

    def _each(self, method: str, sample_shape: torch.Size) -> torch.Tensor:
        out = [self.draws(m, functools.partial(self._one, m, method, sample_shape)) for m in range(len(self.members))]
        return torch.stack(out, len(sample_shape))  # (*S, M, B, D)

    def _one(self, m: int, method: str, sample_shape: torch.Size) -> torch.Tensor:
        return getattr(self.members[m](), method)(sample_shape)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        return self._each("rsample", torch.Size(sample_shape))

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self._each("sample", torch.Size(sample_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(value)

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean

    @property
    def variance(self) -> torch.Tensor:
        return self.base.variance

    def entropy(self) -> torch.Tensor:
        return self.base.entropy()


class Stacked(VAE):
    """The members' VAEs as one (see the module's docstring); the first member's family, likelihood
    and prior serve all (none of them holds a parameter: ``stackable``)."""

    def __init__(self, models: Sequence[VAE], draws: Draws):
        first = models[0]
        self.weights, _ = stack_module_state(list(models))  # name -> (M, ...) leaf tensors
        enc = {n.removeprefix("encoder."): t for n, t in self.weights.items() if n.startswith("encoder.")}
        dec = {n.removeprefix("decoder."): t for n, t in self.weights.items() if n.startswith("decoder.")}
        super().__init__(Vmapped(first.encoder, enc, len(first.x_shape)), first.family, Vmapped(first.decoder, dec, 1), first.head, first.prior_model)
        self.members, self.draws = list(models), draws
        self.relayout()
        self.bind()

    def relayout(self) -> None:
        """Store each stacked weight in the memory layout its gradient comes in (a linear layer's
        under ``vmap``: transposed), so backward hands the gradient over instead of copying it
        into the weight's layout (2 ms a step for 8 members of a 784-200 layer on 2 cores).
        The probe runs each network once on zeros."""
        m, d = len(self.members), self.latent_dim
        x = torch.zeros(m, 2, *self.x_shape, device=self.weights_device)
        z = torch.zeros(m, 2, d, device=self.weights_device)
        strides: dict[str, tuple[int, ...]] = {}
        hooks = [w.register_hook(lambda g, n=n: strides.__setitem__(n, g.stride())) for n, w in self.weights.items()]  # before accumulation
        (self.encoder(x).float().sum() + self.decoder(self.family.decoder_input(z)).float().sum()).backward()
        for hook in hooks:
            hook.remove()
        for name, w in list(self.weights.items()):
            stride = strides.get(name, w.stride())
            if stride != w.stride():
                moved = torch.empty_strided(w.shape, stride, dtype=w.dtype, device=w.device).copy_(w.detach())
                self.weights[name] = moved.requires_grad_()
            self.weights[name].grad = None
        for net, prefix in ((self.encoder, "encoder."), (self.decoder, "decoder.")):
            assert isinstance(net, Vmapped)
            net.params = {n.removeprefix(prefix): t for n, t in self.weights.items() if n.startswith(prefix)}

    @property
    def weights_device(self) -> torch.device:
        return next(iter(self.weights.values())).device

    def bind(self) -> None:
        """Make every member's parameters views of its slice of the stacked weights."""
        for m, model in enumerate(self.members):
            for name, p in model.named_parameters():
                p.data = self.weights[name].data[m]

    def stacked(self) -> list[torch.Tensor]:
        """The stacked weights, in the members' parameter order."""
        return list(self.weights.values())

    def posterior(self, x: torch.Tensor, stop: bool = False) -> Distribution:
        """q(z|x) for x (M, B, *x_shape): batch (M, B), each member's draws from its own stream."""
        if stop:
            with torch.no_grad():
                return self.posterior(x)
        raw = self._raw(x)  # (M, B, raw_size)
        family = self.family
        members = [functools.partial(family.posterior, raw[m]) for m in range(raw.shape[0])]
        return PerMember(family.posterior(raw), members, self.draws)

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q || p(z)) per example, (M, B): the family's closed form on the stacked q where it has one."""
        return super().kl(q.base if isinstance(q, PerMember) else q, z)

    def kl_per_dim(self, q: Distribution) -> torch.Tensor | None:
        return super().kl_per_dim(q.base if isinstance(q, PerMember) else q)
