"""The explorer's state: one loaded run and the requests it answers, as PNG bytes or JSON.

Every family-specific choice goes through the ``Family`` hooks (``traverse`` for the slider
ranges, ``interpolate``, ``sample_prior``); nothing here names a family.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import torch

from ..errors import SEED_LIMIT, RunError
from ..report import latent
from ..report.images import tile
from ..report.run import RunView, ascii_index, open_run
from . import png

MAX_TEST = 1000  # test images offered for picking
MAX_SAMPLES = 64


class BadRequest(ValueError):
    """A request with missing or invalid parameters (HTTP 400)."""


class Explorer:
    """A loaded run: decodes latents and encodes test images on request (thread-safe)."""

    def __init__(self, view: RunView):
        self.view = view
        self.model, self.family = self.view.model, self.view.model.family
        self.dim = self.family.dim
        self.classes = self.model.class_names if view.conditional else None
        self._lock = threading.Lock()
        with torch.inference_mode():
            self.points = latent.points(view.given(), self.view.test)  # (N, D): a conditional model's at each image's label
            self.ranking = latent.rank_dimensions(view.given(), self.view.test)
            self.centre = latent.prior_centre(self.decoder_for(None), self.points[0]).float()  # (D,)
            self.ranges = self._slider_ranges()  # (D, 2)

    @classmethod
    def open(cls, run_dir: str | Path, max_test: int = MAX_TEST) -> Explorer:
        """Load a run folder (RunError without a model, or for a table run) with its first ``max_test`` test images."""
        view = open_run(run_dir, max_test)
        if view.columns is not None:
            raise RunError(f"{run_dir} models a table; the explorer draws images: see its report (reparam report {run_dir}) or sample rows (reparam sample {run_dir} --out rows.csv)")
        return cls(view)

    def _slider_ranges(self) -> torch.Tensor:
        """Per dimension: the family's own sweep through the prior's centre, widened to the test codes."""
        ends = torch.stack([self.family.traverse(self.centre, d, 2)[:, d] for d in range(self.dim)])  # (D, 2)
        lo = torch.minimum(ends.min(1).values, self.points.min(0).values)
        hi = torch.maximum(ends.max(1).values, self.points.max(0).values)
        return torch.stack([lo, hi], 1)

    def decoder_for(self, label: int | None):
        """The model that decodes and samples: a conditional model given class ``label``
        (None: the class the run was opened with); the model itself otherwise."""
        if self.classes is None:
            return self.model
        return self.model.given(torch.tensor(self.view.label if label is None else label))

    def label_arg(self, text: str) -> int | None:
        """'' -> None (the default class); else a class index of a conditional run (BadRequest otherwise)."""
        if text == "":
            return None
        if self.classes is None:
            raise BadRequest("label applies to a conditional run (model.condition=label)")
        index = ascii_index(text, len(self.classes))
        if index is None:
            raise BadRequest(f"label must be an integer in [0, {len(self.classes)})")
        return index

    def _temperature_ok(self) -> bool:
        return latent.prior_samples(self.decoder_for(None), 1, 0.5, 0) is not None

    def meta(self) -> dict:
        """What the page needs to build itself: dimensions by rank, slider ranges, options."""
        r = self.ranking
        return {
            "title": self.view.title,
            "dim": self.dim,
            "order": r.order.tolist(),
            "scores": _floats(r.scores),
            "active": r.active.tolist(),
            "what": r.what,
            "ranges": [_floats(row) for row in self.ranges],
            "start": _floats(self.centre),
            "kinds": list(self.family.interpolation_kinds()),
            "temperature": self._temperature_ok(),
            "n_test": len(self.view.test),
            "classes": self.classes,
            "label": self.view.label,
        }

    def latent_arg(self, text: str) -> torch.Tensor:
        """'0.1,-2,...' -> a (D,) latent in the family's support; BadRequest unless exactly D finite numbers."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise BadRequest("z must be comma-separated numbers") from None
        if len(values) != self.dim or not all(math.isfinite(v) for v in values):
            raise BadRequest(f"z must hold {self.dim} finite numbers")
        return self.model.family.constrain(torch.tensor(values, dtype=self.centre.dtype))  # sliders may leave the support

    def index_arg(self, text: str) -> int:
        index = ascii_index(text, len(self.view.test))
        if index is None:
            raise BadRequest(f"i must be an integer in [0, {len(self.view.test)})")
        return index

    def _decode(self, z: torch.Tensor, label: int | None = None) -> torch.Tensor:
        """Latents (*batch, D) -> mean images (*batch, *x_shape) (given class ``label``), one request at a time."""
        with self._lock, torch.inference_mode():
            return self.decoder_for(label).decode_mean(z)

    def decode_png(self, z: torch.Tensor, label: int | None = None) -> bytes:
        return png.encode(self._decode(z, label))

    def test_png(self, i: int) -> bytes:
        return png.encode(self.view.test[i])

    def encode(self, i: int) -> dict:
        """Posterior of test image i: representative latent, spread per dimension (or None), label."""
        with self._lock:
            sd = latent.spread(self.view.given().rows(slice(i, i + 1)), self.view.test[i : i + 1])
        labels = self.view.labels
        return {
            "i": i,
            "z": _floats(self.points[i]),
            "spread": None if sd is None else _floats(sd[0]),
            "label": None if labels is None else int(labels[i]),
        }

    def interpolate_png(self, i: int, j: int, t: float, kind: str, label: int | None = None) -> bytes:
        if kind not in self.family.interpolation_kinds() or not 0.0 <= t <= 1.0:
            raise BadRequest(f"kind must be one of {self.family.interpolation_kinds()} and t in [0, 1]")
        z = self.family.interpolate(self.points[i], self.points[j], torch.tensor([t]), kind)  # (1, D)
        return png.encode(self._decode(z, label)[0])

    def sample(self, n: int, seed: int, temperature: float, label: int | None = None) -> torch.Tensor:
        """n latents drawn from p(z) (p(z|y) given class ``label``) at a temperature: (n, D)."""
        if not 1 <= n <= MAX_SAMPLES or not 0.0 < temperature <= 1.0:
            raise BadRequest(f"n must be in [1, {MAX_SAMPLES}] and temperature in (0, 1]")
        if not 0 <= seed < SEED_LIMIT:  # torch's generators take 64 bits
            raise BadRequest("seed must be an integer in [0, 2**63)")
        with latent.seeded(seed):
            try:
                return self.decoder_for(label).sample_prior(n, temperature)
            except NotImplementedError:
                raise BadRequest("this latent family has no temperature; use temperature=1") from None

    def samples_png(self, n: int, seed: int, temperature: float, label: int | None = None) -> bytes:
        images = self._decode(self.sample(n, seed, temperature, label), label)  # (n, *x_shape)
        return png.encode(tile(images, ncols=min(n, 8)))


def _floats(t: torch.Tensor) -> list[float]:
    return [round(float(v), 4) for v in t]
