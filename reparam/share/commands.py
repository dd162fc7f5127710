"""``reparam push RUN REPO`` (a run on the Hugging Face Hub), ``reparam encode RUN DATA --out z.npy``
(posterior encodings) and ``reparam export RUN --format onnx|torch --out DIR`` (the networks).

RUN may be a Hub run, ``hf://user/repo[@revision]``, wherever a command only reads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import OutputError, ReparamError, check_seed
from ..files import atomic_write_bytes, check_output

SPLITS = ("test", "train")


def cmd_push(a: argparse.Namespace) -> int:
    from .. import runs
    from . import card, hub

    repo = hub.check_repo(a.repo)
    run_dir = runs.check_run_dir(a.run)
    runs.load(run_dir)  # a folder that loads, or one line saying why not, before anything travels
    files = hub.shared_files(run_dir)
    text = card.render(run_dir, repo)
    if a.dry_run:
        print("\n".join([*files, hub.CARD]))
        return 0
    print(hub.push(run_dir, repo, text, private=a.private, message=a.message or f"reparam push {run_dir.name}"))
    return 0


def data_for(model, run: Path, what: str):
    """(x, labels) to encode: the run's own test or train split, or a file of images."""
    from .. import data, runs
    from .encode import read_images

    if what in SPLITS:
        source = runs.load_data(run, model.config)
        return (source.test, source.test_labels) if what == "test" else (data.unit(source.train), source.train_labels)  # held levels as floats
    if model.columns is not None:
        raise ReparamError(f"{what}: a table run encodes its own rows; name test or train")
    x, y = read_images(Path(what), model.x_shape)
    if model.config.data.binarize != "none":  # as the run's test images: binarized once, with the fixed seed
        import torch

        x = data.binarize(x, torch.Generator().manual_seed(data.TEST_BINARIZATION_SEED))
    return x, y


def cmd_encode(a: argparse.Namespace) -> int:
    import torch

    from .. import runs
    from .encode import check_out, encode, payload

    out = Path(a.out)
    check_out(out, a.draws)
    check_output(out, a.overwrite)
    check_seed("--seed", a.seed)
    run = runs.local(a.run)  # a Hub run fetched once, for the model and its data
    model = runs.load(run)
    x, y = data_for(model, run, a.data)
    if model.classes and y is None:
        raise ReparamError(f"{a.data} carries no labels; a conditional run (model.condition=label) encodes q(z|x, y): save x and y")
    torch.manual_seed(a.seed)
    arrays = encode(model, x, y, a.draws, progress=None)  # y: a conditional model's q(z|x, y), and the .npz's labels
    atomic_write_bytes(out, payload(arrays, out.suffix))
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items() if out.suffix == ".npz" or k == ("draws" if a.draws else "point"))
    print(f"{out}: {shapes}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from .. import runs
    from .export import PARAMETERIZATION, SUFFIX, export

    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; name a folder for the exported programs")
    if not out.parent.is_dir():
        raise OutputError(f"folder {out.parent} does not exist; create it or choose another --out")
    names = [f"encoder{SUFFIX[a.format]}", f"decoder{SUFFIX[a.format]}", PARAMETERIZATION]
    if out.is_dir():
        for name in names:
            check_output(out / name, a.overwrite)
    model = runs.load(a.run)
    files = export(model, model.config, a.format)
    out.mkdir(exist_ok=True)
    for name, payload in files.items():
        atomic_write_bytes(out / name, payload)
    print("\n".join(str(out / name) for name in files))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("push", help="upload a run to the Hugging Face Hub with a model card (needs reparam[hub])")
    p.add_argument("run")
    p.add_argument("repo", help="the Hub repository, user/repo (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--message", help="the commit message (default: reparam push RUN)")
    p.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded (and README.md, the card) and upload nothing")
    p.set_defaults(func=cmd_push)
    e = sub.add_parser("encode", help="posterior encodings of a data set: points (means), standard deviations, draws")
    e.add_argument("run", help="a run folder or hf://user/repo[@revision]")
    e.add_argument("data", metavar="DATA", help="test or train (the run's own data), or an .npy/.npz file of images")
    e.add_argument("--out", required=True, help="z.npy (the points (N, D), or the draws (K, N, D) with --draws) or z.npz (point, mean, stddev, draws, labels)")
    e.add_argument("--draws", type=int, default=0, help="also draw K latents per example from q(z|x) (default 0)")
    e.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never a device, FIFO or socket)")
    e.set_defaults(func=cmd_encode)
    x = sub.add_parser("export", help="the encoder and decoder as ONNX or torch.export programs, with parameterization.json")
    x.add_argument("run", help="a run folder or hf://user/repo[@revision]")
    x.add_argument("--format", choices=("onnx", "torch"), default="onnx", help="onnx (encoder.onnx, decoder.onnx; needs reparam[export]) or torch (.pt2, torch.export) (default onnx)")
    x.add_argument("--out", required=True, help="folder for the programs and parameterization.json (created if missing)")
    x.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in --out")
    x.set_defaults(func=cmd_export)
