"""One likelihood per column of a table: Gaussian real columns, Bernoulli binary ones,
categorical ones (the observation model of TVAE, Xu et al. 2019, without its mode-specific
normalization). Its ``log_prob`` sums the columns into one log p(x|z) per row."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from ..errors import ConfigError, DataError
from ..numerics import positive
from .base import Head, register

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def parse_layout(columns: Sequence[str]) -> list[tuple[str, int]]:
    """["real", "binary", "categorical:3"] -> [("real", 1), ("binary", 1), ("categorical", 3)]."""
    out = []
    for spec in columns:
        kind, _, levels = str(spec).partition(":")
        if kind in ("real", "binary") and not levels:
            out.append((kind, 1))
        elif kind == "categorical" and levels.isdigit() and int(levels) >= 2:
            out.append((kind, int(levels)))
        else:
            raise ConfigError(f"a table column is 'real', 'binary' or 'categorical:L' with L >= 2 levels, got {spec!r}")
    return out


class Layout:
    """Where each kind of column sits in a coded row of width F'.

    ``real``, ``binary`` (R,), (Bn,): positions in the row; ``categorical``: one slice per
    categorical column; ``order`` (C,): column j's place in cat([real, binary, categorical]).
    """

    def __init__(self, columns: list[tuple[str, int]]):
        real: list[int] = []
        binary: list[int] = []
        kinds: list[int] = []
        self.categorical: list[slice] = []
        start = 0
        for kind, width in columns:
            {"real": real, "binary": binary, "categorical": kinds}[kind].append(start)
            if kind == "categorical":
                self.categorical.append(slice(start, start + width))
            start += width
        self.width, self.columns = start, columns
        self.real, self.binary = torch.tensor(real, dtype=torch.long), torch.tensor(binary, dtype=torch.long)
        grouped = [j for kind in ("real", "binary", "categorical") for j, (k, _) in enumerate(columns) if k == kind]
        self.order = torch.argsort(torch.tensor(grouped, dtype=torch.long))


class ColumnsDistribution(Distribution):
    """p(x|z) of coded rows: a product of one distribution per column.

    log p(x|z) = sum_real log N(x_j; mu_j, s_j) + sum_binary [x_j l_j - softplus(l_j)]
                 + sum_categorical sum_l x_jl log softmax(a_j)_l

    ``raw`` (*batch, F') holds mu_j, l_j and the logits a_j at each column's place in the
    row; ``scale`` (R,) the real columns' scales. batch_shape (*batch,), event_shape (F',).
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, raw: torch.Tensor, scale: torch.Tensor, layout: Layout, event_shape: tuple[int, ...]):
        self.raw, self.scale, self.layout = raw, scale, layout
        super().__init__(raw.shape[:-1], torch.Size(event_shape), validate_args=False)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(-len(self.event_shape)) if len(self.event_shape) != 1 else x

    def _parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-column log-likelihoods grouped by kind: [(*, R), (*, Bn), (*, 1) per categorical column]."""
        lay, raw = self.layout, self.raw
        xr, mu = x[..., lay.real], raw[..., lay.real]
        parts = [-0.5 * ((xr - mu) / self.scale) ** 2 - torch.log(self.scale) - HALF_LOG_2PI]
        logits = raw[..., lay.binary]
        parts.append(x[..., lay.binary] * logits - F.softplus(logits))
        for s in lay.categorical:
            parts.append((x[..., s] * torch.log_softmax(raw[..., s], -1)).sum(-1, keepdim=True))
        return parts

    def column_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_j|z) per column, (*batch, C), in the table's column order."""
        parts = torch.cat(_cat(self._parts(self._flat(x))), -1)
        return parts.index_select(-1, self.layout.order.to(parts.device))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        parts = self._parts(self._flat(x))  # never empty: the real columns' part comes first
        out = parts[0].sum(-1)
        for p in parts[1:]:
            out = out + p.sum(-1)
        return out

    @property
    def mean(self) -> torch.Tensor:
        """Real columns: mu; binary: sigmoid(l); categorical: softmax(a). (*batch, *event_shape)."""
        lay, out = self.layout, self.raw.clone()
        out[..., lay.binary] = torch.sigmoid(self.raw[..., lay.binary])
        for s in lay.categorical:
            out[..., s] = torch.softmax(self.raw[..., s], -1)
        return out.unflatten(-1, self.event_shape)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Draws of coded rows: mu + s eps, a Bernoulli bit, a one-hot category. (*sample, *batch, *event)."""
        lay = self.layout
        raw = self.raw.expand(torch.Size(sample_shape) + self.raw.shape)
        out = torch.empty_like(raw)
        out[..., lay.real] = raw[..., lay.real] + self.scale * torch.randn_like(raw[..., lay.real])
        out[..., lay.binary] = torch.bernoulli(torch.sigmoid(raw[..., lay.binary]))
        for s in lay.categorical:
            pick = torch.distributions.Categorical(logits=raw[..., s]).sample()
            out[..., s] = F.one_hot(pick, s.stop - s.start).to(out.dtype)
        return out.unflatten(-1, self.event_shape)


def _cat(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Broadcast the parts' batch dimensions against each other (real and categorical parts may differ)."""
    batch = torch.broadcast_shapes(*[p.shape[:-1] for p in parts])
    return [p.expand(*batch, p.shape[-1]) for p in parts]


@register("table")
class TableHead(Head):
    """A head per column of a table (the coded rows of ``reparam.tables``; data.name=table).

    ``columns`` lists each column's kind in row order: ``"real"`` (one decoder output, the
    mean of a Normal whose scale is a learned parameter per column, softplus floored at
    ``min_scale`` in standardized units, as TVAE's), ``"binary"`` (one logit) or
    ``"categorical:L"`` (L logits). Without ``columns`` every entry of x_shape is a real
    column. Raw layout: the coded row itself, raw_size = F'.
    """

    takes_columns = True

    def __init__(self, x_shape, columns: Sequence[str] | None = None, *, min_scale: float = 0.01):
        super().__init__(x_shape)
        if not (isinstance(min_scale, (int, float)) and not isinstance(min_scale, bool) and min_scale > 0):
            raise ConfigError(f"likelihood.min_scale must be a positive number, got {min_scale!r}")
        specs = parse_layout(columns) if columns is not None else [("real", 1)] * self.n_pixels
        self.layout = Layout(specs)
        if self.layout.width != self.n_pixels:
            raise DataError(f"the table's columns code a row of {self.layout.width} numbers, but rows hold {self.n_pixels}")
        self.columns = [f"categorical:{w}" if k == "categorical" else k for k, w in specs]
        self.min_scale = float(min_scale)
        self.raw_scale = nn.Parameter(torch.full((len(self.layout.real),), 0.5413))  # softplus -> ~1

    def scale(self) -> torch.Tensor:
        """The real columns' scales (R,)."""
        return positive(self.raw_scale, floor=self.min_scale)

    def forward(self, raw: torch.Tensor) -> ColumnsDistribution:
        return ColumnsDistribution(raw, self.scale().to(raw.dtype), self.layout, self.x_shape)

    def check_data(self, x: torch.Tensor, what: str) -> None:
        """Binary entries must be 0 or 1, categorical blocks one-hot."""
        flat = x.flatten(1) if x.ndim > 1 else x[None]
        bits = flat[:, self.layout.binary]
        if not bool(((bits == 0) | (bits == 1)).all()):
            raise DataError(f"{what} holds binary columns that are not 0 or 1; code rows with reparam.tables")
        for s in self.layout.categorical:
            block = flat[:, s]
            if not bool((((block == 0) | (block == 1)).all()) and bool((block.sum(1) == 1).all())):
                raise DataError(f"{what} holds a categorical column that is not one-hot; code rows with reparam.tables")
