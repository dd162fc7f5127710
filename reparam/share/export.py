"""A run's encoder and decoder as standalone programs (ONNX or ``torch.export``), with their
parameterization beside them in parameterization.json.

The encoder program takes x (batch, *x_shape) and returns the network's raw numbers
(batch, raw_size), every tensor of q(z|x) (its distribution's parameters, named ``q_<name>``)
and ``point`` (batch, D), the family's representative latent; the decoder program takes a
latent z (batch, D) as q(z|x) or p(z) draws it and returns the raw numbers, every tensor of
p(x|z) (``px_<name>``) and ``mean`` (batch, *x_shape). The family's map from raw numbers to
q's parameters (softplus and floor, clamps) and its ``decoder_input`` run inside the programs,
so that their outputs are q's and p's parameters as ``torch.distributions`` holds them.

parameterization.json names each distribution (its class, what its docstring says of it,
``Independent``'s reinterpreted dimensions, a ``TransformedDistribution``'s transforms) and
which output holds each parameter; the prior's parameters are written as numbers. All of it
is read from the distribution objects the family and the head build, walked generically
(``describe``): no family or head is named here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, Independent, TransformedDistribution

from ..errors import RunError
from ..latents import Family
from ..numerics import LOGVAR_MAX, LOGVAR_MIN, POSITIVE_FLOOR

FORMATS = ("onnx", "torch")
SUFFIX = {"onnx": ".onnx", "torch": ".pt2"}
PARAMETERIZATION = "parameterization.json"
FORMAT = "reparam-export/1"
EXAMPLE_BATCH = 2


def refusal(cfg) -> str | None:
    """Why a run's model does not export as one encoder and one decoder, or None when it does."""
    if cfg.latent.flow != "none":
        return f"latent.flow={cfg.latent.flow}: q(z|x) is the family's distribution pushed through a flow, which the export does not carry; export models without a flow"
    if cfg.model.stochastic:
        return "model.stochastic: a hierarchy's layers are not one encoder and one decoder; export one-layer models"
    if cfg.model.condition != "none":
        return "model.condition=label: the networks also read the labels; export unconditional models"
    return None


def leaves(d: Distribution, prefix: str) -> tuple[dict[str, Any], list[tuple[str, torch.Tensor]]]:
    """A distribution's structure for the JSON, and its tensors as (output name, tensor), in order.

    ``Independent`` and ``TransformedDistribution`` are walked into (their dimensions and
    transforms written down); any other distribution's tensors are its public tensor attributes
    (its parameters as given, e.g. ``loc``, ``scale``, ``logits``, a temperature, not the ones
    torch derives lazily from them), and the distributions it holds are walked in turn (a
    one-hot categorical's categorical, a mixture's weights and components), their outputs
    named after the attribute that holds them.
    """
    if isinstance(d, Independent):
        inner, tensors = leaves(d.base_dist, prefix)
        return {**_kind(d), "reinterpreted_batch_ndims": d.reinterpreted_batch_ndims, "base": inner}, tensors
    if isinstance(d, TransformedDistribution):
        inner, tensors = leaves(d.base_dist, prefix)
        return {**_kind(d), "transforms": [repr(t) for t in d.transforms], "base": inner}, tensors
    info: dict[str, Any] = {**_kind(d), "parameters": {}}
    found: list[tuple[str, torch.Tensor]] = []
    for name, value in vars(d).items():
        if isinstance(value, Distribution):
            held, more = leaves(value, f"{prefix}{name.lstrip('_')}_")
            info.setdefault("holds", {})[name.lstrip("_")] = held
            found += more
        elif not name.startswith("_") and torch.is_tensor(value):
            info["parameters"][name] = prefix + name
            found.append((prefix + name, value))
    return info, found


def _kind(d: Distribution) -> dict[str, str]:
    return {"type": f"{type(d).__module__}.{type(d).__qualname__}", "about": _about(d)}


def _about(obj: Any) -> str:
    """The first paragraph of an object's class docstring, on one line."""
    return " ".join((type(obj).__doc__ or "").strip().split("\n\n")[0].split())


class EncoderProgram(nn.Module):
    """x (B, *x_shape) -> (raw (B, raw_size), q(z|x)'s tensors, point (B, D))."""

    vae: Any  # a one-layer VAE (``refusal`` is None for its config)

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.vae.encode(x)
        q = self.vae.family.posterior(raw)
        return (raw, *(t for _, t in leaves(q, "q_")[1]), self.vae.point(q))


class DecoderProgram(nn.Module):
    """z (B, D) -> (raw, p(x|z)'s tensors, mean (B, *x_shape))."""

    vae: Any

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.vae.decoder(self.vae.family.decoder_input(z)).float()
        p = self.vae.head(raw)
        return (raw, *(t for _, t in leaves(p, "px_")[1]), self.vae.head.mean(raw))


def output_shapes(module: nn.Module, example: torch.Tensor, outputs: list[str]) -> dict[str, list]:
    """Each output's shape, ``"batch"`` where it follows the input's batch (read at two batch sizes)."""
    with torch.no_grad(), _quiet():
        a, b = module(example), module(torch.cat([example, example[:1]]))
    return {n: ["batch" if i != j else i for i, j in zip(s.shape, t.shape)] for n, s, t in zip(outputs, a, b)}


def _decoder_input(fam) -> str:
    """What the decoder program does to z before the decoder network."""
    if type(fam).decoder_input is Family.decoder_input:
        return "none: the decoder network reads z itself"
    doc = " ".join((type(fam).decoder_input.__doc__ or "").split())
    return "the family's decoder_input(z) runs inside the program" + (f": {doc}" if doc else f" (see posterior.about: {_about(fam)})")


def parameterization(vae, cfg, files: dict[str, str], progs: dict | None = None) -> dict[str, Any]:
    """parameterization.json's content, read from the programs (``programs(vae)`` unless given) and the distributions the model builds."""
    progs = progs or programs(vae)
    shapes = {name: output_shapes(module, example, outputs) for name, (module, example, _, outputs) in progs.items()}
    with torch.no_grad(), _quiet():
        q = vae.family.posterior(vae.encode(progs["encoder"][1]))
        p = vae.head(vae.decoder(vae.family.decoder_input(progs["decoder"][1])).float())
        prior_info, prior_tensors = leaves(vae.prior(), "")
    fam, dim = vae.family, vae.family.dim
    return {
        "format": FORMAT,
        "x_shape": list(vae.x_shape), "latent_dim": dim,
        "encoder": {
            "file": files["encoder"], "input": {"x": {"shape": ["batch", *vae.x_shape], "dtype": "float32", "range": "[0, 1] as the run's data (binarized where it was)"}},
            "outputs": shapes["encoder"],
            "raw_layout": f"raw has {fam.n_params} blocks of {dim} (raw.reshape(batch, {fam.n_params}, {dim})[:, i] is block i), in the order the family's description gives them",
        },
        "posterior": {
            "family": cfg.latent.family, "options": dict(cfg.latent.options), "about": _about(fam), "distribution": leaves(q, "q_")[0],
            "point": "the family's representative latent of q (its mean for most families); the decoder takes it as z",
        },
        "decoder": {
            "file": files["decoder"], "input": {"z": {"shape": ["batch", dim], "dtype": "float32", "what": "a latent as q(z|x) or p(z) draws it"}},
            "outputs": shapes["decoder"], "decoder_input": _decoder_input(fam),
        },
        "likelihood": {"name": cfg.likelihood.name, "about": _about(vae.head), "distribution": leaves(p, "px_")[0],
                       **({} if vae.columns is None else {"columns": vae.columns.to_json()})},  # a table's columns, as RUN/columns.json
        "prior": {"about": "p(z), its parameters as numbers", "distribution": prior_info, "values": {n: t.tolist() for n, t in prior_tensors}},
        "numerics": {"positive_floor": POSITIVE_FLOOR, "logvar_min": LOGVAR_MIN, "logvar_max": LOGVAR_MAX,
                     "what": "positive parameters are softplus(raw) + positive_floor; log-variances are clamped to [logvar_min, logvar_max] before exp(logvar / 2)"},
    }  # fmt: skip


def programs(vae) -> dict[str, tuple[nn.Module, torch.Tensor, list[str], list[str]]]:
    """name -> (module, example input, input names, output names)."""
    x = torch.rand(EXAMPLE_BATCH, *vae.x_shape)
    with torch.no_grad(), _quiet():
        q = vae.family.posterior(vae.encode(x))
        z = vae.point(q)
        p = vae.head(vae.decoder(vae.family.decoder_input(z)).float())
    return {
        "encoder": (EncoderProgram(vae).eval(), x, ["x"], ["raw", *(n for n, _ in leaves(q, "q_")[1]), "point"]),
        "decoder": (DecoderProgram(vae).eval(), z, ["z"], ["raw", *(n for n, _ in leaves(p, "px_")[1]), "mean"]),
    }


@contextlib.contextmanager
def _quiet():
    """The exporters' own log lines and prints (optional operator sets it skips) kept off the terminal,
    and the distributions' argument checks off while tracing: a check is a data-dependent branch,
    which a program cannot hold (and the hot loop runs without them too)."""
    log = logging.getLogger("torch.onnx")
    level, log.level = log.level, logging.ERROR
    validate = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations, raised inside the exporters
            yield
    finally:
        log.setLevel(level)
        Distribution.set_default_validate_args(validate)


def export_program(module: nn.Module, example: torch.Tensor, inputs: list[str], outputs: list[str], fmt: str) -> bytes:
    """One program as the bytes of a .pt2 (``torch.export.save``) or an .onnx file, its batch dynamic."""
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        ep = torch.export.export(module, (example,), dynamic_shapes=({0: batch},), strict=False)
        if fmt == "torch":
            buf = io.BytesIO()
            torch.export.save(ep, buf)
            return buf.getvalue()
        try:
            prog = torch.onnx.export(ep, (example,), dynamo=True, input_names=inputs, output_names=outputs, verbose=False)
        except ImportError as e:
            raise RunError(f"--format onnx needs onnx and onnxscript ({e.name} is missing); pip install 'reparam[export]'") from None
    assert prog is not None  # written to no file: the program is returned
    return prog.model_proto.SerializeToString()


def export(vae, cfg, fmt: str) -> dict[str, bytes]:
    """file name -> bytes: encoder and decoder programs in ``fmt`` and parameterization.json."""
    import json

    why = refusal(cfg)
    if why is not None:
        raise RunError(f"cannot export this run: {why}")
    files = {name: name + SUFFIX[fmt] for name in ("encoder", "decoder")}
    progs = programs(vae)
    out = {files[name]: export_program(*spec, fmt) for name, spec in progs.items()}
    info = parameterization(vae, cfg, files, progs)
    out[PARAMETERIZATION] = (json.dumps(info, indent=1, sort_keys=False) + "\n").encode()
    return out
