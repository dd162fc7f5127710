"""How images are held in memory: 8-bit images as uint8 levels k standing for k / 255 (a quarter
of float32's bytes), binary images as booleans, anything else as float32 in [0, 1]; ``unit``
turns a batch of them into float32 in [0, 1], with the floats a conversion at load gave before
(the correctly rounded k / 255) on any device."""

from __future__ import annotations

import torch

#: float32 k / 255 for k = 0..255, by the division ``to_unit`` makes: ``unit`` looks levels up here,
#: so a batch converted on any device holds exactly these floats
LEVELS = torch.arange(256, dtype=torch.uint8).float().div_(255.0)
_LEVELS: dict[torch.device, torch.Tensor] = {}


def unit(x: torch.Tensor) -> torch.Tensor:
    """Images as held (``images.compact``) -> float32 in [0, 1], same shape and device: uint8
    levels divided by 255 on a CPU, looked up in ``LEVELS`` elsewhere (the same floats), booleans
    as 0.0 / 1.0, floats as they are (not copied)."""
    if x.dtype == torch.uint8 and x.device.type == "cpu":
        return x.float().div_(255.0)  # to_unit's own division (a table look-up is ~2x slower here)
    if x.dtype == torch.uint8:  # a GPU divides by a scalar as a product with its reciprocal: other floats for half the levels
        table = _LEVELS.get(x.device)
        if table is None:
            table = _LEVELS[x.device] = LEVELS.to(x.device)
        return torch.take(table, x.long())
    return x.float() if x.dtype == torch.bool else x


def levels(x: torch.Tensor) -> torch.Tensor:
    """The values images as held take, as float32 (a likelihood's support check, without a float copy of them all)."""
    if x.dtype == torch.uint8:
        return LEVELS[torch.bincount(x.flatten().cpu(), minlength=256) > 0]
    return unit(x)
