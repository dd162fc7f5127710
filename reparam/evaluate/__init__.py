"""Evaluation: what a model scores, and what its gradients look like.

- ``metrics``: the held-out ELBO and its terms, the importance-sampled log-likelihood,
  and ``evaluate`` (a run's summary: the model it defines, and for relaxed families the
  discrete model beside it);
- ``diagnostics``: the posterior-collapse dashboard (active units, KL per dimension, I(x; z));
- ``gradvar``: the gradient-variance lab (variance, SNR and cosine per estimator);
- ``quality``: FID, KID and precision / recall of decoded prior draws, through ``extractor``
  (a classifier of the run's images, trained on first use and cached; torchmetrics optional);
- ``commands``: ``reparam eval`` and ``reparam gradvar``.
"""

from __future__ import annotations

from . import budget, diagnostics, gradvar  # noqa: F401
from .metrics import DRAW_EXAMPLES, DRAW_SAMPLES, MAX_ELEMENTS, PRECISIONS, classification, elbo_terms, evaluate, log_likelihood, nll_scores, scores

__all__ = ["DRAW_EXAMPLES", "DRAW_SAMPLES", "MAX_ELEMENTS", "PRECISIONS", "budget", "classification", "diagnostics", "elbo_terms", "evaluate", "gradvar", "log_likelihood", "nll_scores", "scores"]
