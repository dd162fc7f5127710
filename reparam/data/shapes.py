"""``shapes``: generated sprites with known factors (dSprites-like, Matthey et al. 2017), no download.

Every combination of five factors, one binary image (canvas, canvas) each:

| factor | values |
|---|---|
| shape | square, ellipse, heart |
| scale | ``data.scales`` half-sizes, evenly from 0.09 to 0.18 of the canvas (dSprites: 6 from 0.5 to 1) |
| rotation | ``data.rotations`` angles, evenly in [0, 2 pi) (dSprites: 40) |
| x, y | ``data.positions`` centres each, evenly across the canvas inside a margin that keeps every sprite whole (dSprites: 32) |

The defaults (canvas 32, 4 scales, 8 rotations, 8 positions) make 3 * 4 * 8 * 8 * 8 = 6,144
images of 32 x 32, a grid that trains in minutes on two CPU cores; dSprites is 737,280 images
of 64 x 64 (6 scales, 40 rotations, 32 positions). As in dSprites, a rotated square repeats
every quarter turn and an ellipse every half turn, so rotation is not recoverable from every
image. The images are drawn at once, as a point-in-shape test of every pixel centre against
every sprite (no loop over pixels), and are the same on every call: nothing is random but the
test split, a random ``data.test_fraction`` of the grid held out with seed 0 (the same for every
run). ``Data.factors`` keeps each image's factor values (their indices) beside it.
"""

from __future__ import annotations

import math

import torch

from ..errors import require
from .base import Data, Factors, Source, changed, register
from .images import split_rows

SHAPES = ("square", "ellipse", "heart")
KEYS = ("canvas", "scales", "rotations", "positions")
SCALE_RANGE = (0.09, 0.18)  # half-size (the square's half side) as a share of the canvas
CHUNK = 1024  # sprites drawn at once: (CHUNK, canvas, canvas) floats
MAX_GB = 4  # the images, float32, in memory


def grid(scales: int, rotations: int, positions: int) -> torch.Tensor:
    """Every combination of factor indices (N, 5) int64, the last factor (y) fastest."""
    sizes = (len(SHAPES), scales, rotations, positions, positions)
    axes = torch.meshgrid(*(torch.arange(s) for s in sizes), indexing="ij")
    return torch.stack([a.reshape(-1) for a in axes], dim=1)


def inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether the points (u, v) (B, H, W), in each sprite's own frame (its half-size 1), lie in
    its shape (B,) (0 square, 1 ellipse, 2 heart): (B, H, W) bool."""
    square = (u.abs() <= 1) & (v.abs() <= 1)
    ellipse = u.square() + (v / 0.5).square() <= 1  # dSprites' ellipse: twice as wide as tall
    hu, hv = u / 1.1, -v / 1.1 + 0.15  # the heart (x^2 + y^2 - 1)^3 <= x^2 y^3, point down, centred
    heart = (hu.square() + hv.square() - 1).pow(3) <= hu.square() * hv.pow(3)
    s = shape.view(-1, 1, 1)
    return torch.where(s == 0, square, torch.where(s == 1, ellipse, heart))


def draw(factors: torch.Tensor, canvas: int, scales: int, rotations: int, positions: int) -> torch.Tensor:
    """Images (N, canvas, canvas) in {0, 1} of the factor indices (N, 5): pixel centres mapped into
    each sprite's frame, p -> R(-theta) (p - c) / s, then tested against its shape."""
    lo, hi = SCALE_RANGE
    scale = canvas * torch.linspace(lo, hi, scales)[factors[:, 1]]  # half-size in pixels (N,)
    theta = 2 * math.pi * factors[:, 2].double() / rotations
    margin = math.sqrt(2) * hi * canvas + 0.5  # a rotated square's half-diagonal at the largest scale
    centres = torch.linspace(margin, canvas - margin, positions)
    cx, cy = centres[factors[:, 3]], centres[factors[:, 4]]
    p = torch.arange(canvas, dtype=torch.float32) + 0.5  # pixel centres
    cos, sin = torch.cos(theta).float().view(-1, 1, 1), torch.sin(theta).float().view(-1, 1, 1)
    dx, dy = p.view(1, 1, -1) - cx.view(-1, 1, 1), p.view(1, -1, 1) - cy.view(-1, 1, 1)  # (N, 1, W), (N, H, 1)
    s = scale.view(-1, 1, 1)
    u, v = (cos * dx + sin * dy) / s, (-sin * dx + cos * dy) / s  # (N, H, W)
    return inside(factors[:, 0], u, v).float()


def generate(canvas: int = 32, scales: int = 4, rotations: int = 8, positions: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, canvas, canvas) in {0, 1}, factor indices (N, 5)) of the whole grid, N = 3 * scales
    * rotations * positions^2, drawn CHUNK sprites at a time."""
    factors = grid(scales, rotations, positions)
    images = torch.cat([draw(f, canvas, scales, rotations, positions) for f in factors.split(CHUNK)])
    return images, factors


@register("shapes")
class Shapes(Source):
    """Generated sprites with known factors; chosen by name only (``data.name=shapes``)."""

    splits = True

    def check(self, cfg) -> None:
        require(not cfg.path, "data.path has no effect on data.name=shapes (the images are generated); drop it")
        require(cfg.canvas >= 16, f"data.canvas must be >= 16 pixels, got {cfg.canvas}")
        for key in ("scales", "rotations", "positions"):
            require(getattr(cfg, key) >= 2, f"data.{key} must be >= 2 (a factor needs two values), got {getattr(cfg, key)}")
        n = len(SHAPES) * cfg.scales * cfg.rotations * cfg.positions**2
        gb = n * cfg.canvas**2 * 4 / 1e9
        require(gb <= MAX_GB, f"data.name=shapes would hold {n:,} images of {cfg.canvas}x{cfg.canvas} ({gb:.1f} GB, over {MAX_GB} GB); use fewer scales, rotations or positions, or a smaller data.canvas")

    def check_unused(self, cfg) -> None:
        for key in KEYS:
            require(not changed(cfg, key), f"data.{key} applies to data.name=shapes only, not {cfg.name}; drop it")

    def load(self, cfg, columns=None) -> Data:
        images, factors = generate(cfg.canvas, cfg.scales, cfg.rotations, cfg.positions)
        train, test = (torch.from_numpy(i) for i in split_rows(len(images), cfg.test_fraction, 0, "data.name=shapes"))
        names, sizes = ["shape", "scale", "rotation", "x", "y"], [len(SHAPES), cfg.scales, cfg.rotations, cfg.positions, cfg.positions]
        return Data(images[train], images[test], None, None, "shapes", factors=Factors(names, sizes, factors[train], factors[test]))
