"""A run folder on the Hugging Face Hub: what is pushed, and ``hf://user/repo[@revision]`` read back.

What travels is ``SHARED``: everything ``reparam.load`` and ``reparam eval`` read (the config,
the weights as safetensors, state.json, a table's columns, a conditional run's class names),
the run's numbers and pictures, and the model card (README.md, ``reparam.share.card``). Never a
training checkpoint, a tracker's files or anything that unpickles. ``huggingface_hub`` is an
optional extra (``pip install 'reparam[hub]'``), imported only here, inside functions.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import Path

from ..errors import RunError

SCHEME = "hf://"
CARD = "README.md"
#: Paths (relative to the run folder, ``fnmatch`` patterns) that a push uploads and a download
#: fetches; the Hub's own ``allow_patterns`` read them the same way.
SHARED = (
    "config.json", "model.safetensors", "state.json", "summary.json", "metrics.jsonl", "columns.json", "classes.json",
    "samples.png", "reconstructions.png", "samples.csv", "report.html", "figures/*.png", CARD,
)  # fmt: skip
#: A run folder needs these to be loaded (``reparam.runs.load``).
REQUIRED = ("config.json", "model.safetensors", "state.json")
REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
INSTALL = "pip install 'reparam[hub]'"


def is_hub(spec: str | Path) -> bool:
    """Whether a run argument names a Hub repository (``hf://...``) rather than a folder."""
    return isinstance(spec, str) and spec.startswith(SCHEME)


def parse(spec: str) -> tuple[str, str | None]:
    """``hf://user/repo[@revision]`` -> (``user/repo``, revision or None); RunError naming the form otherwise."""
    repo, at, revision = spec[len(SCHEME) :].partition("@")
    if not REPO.fullmatch(repo) or ".." in repo or (at and not revision):
        raise RunError(f"{spec} is not a Hub run; write hf://user/repo or hf://user/repo@revision (a branch, tag or commit)")
    return repo, revision or None


def check_repo(repo: str) -> str:
    """A repository id as ``reparam push`` takes it (``user/repo``, optionally written ``hf://user/repo``)."""
    name, revision = parse(repo if is_hub(repo) else SCHEME + repo)
    if revision is not None:
        raise RunError(f"{repo}: reparam push writes the repository's main branch; drop @{revision}")
    return name


def shared_files(run_dir: Path) -> list[str]:
    """The run folder's files that a push uploads (relative paths, sorted): those ``SHARED`` names,
    regular files only (a link is never followed out of the folder). RunError where one that
    ``reparam.load`` needs is missing."""
    missing = [name for name in REQUIRED if not (run_dir / name).is_file()]
    if missing:
        raise RunError(f"{run_dir} has no {missing[0]}; push a trained run folder (one that reparam eval reads)")
    found = (p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink())
    return sorted(f for f in found if f != CARD and any(fnmatch.fnmatchcase(f, pattern) for pattern in SHARED))


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a refused or failed request raises: the Hub's HTTP error, and the transport errors of
    whichever HTTP client this huggingface_hub uses (requests' are OSErrors; httpx's and httpx2's are not)."""
    from huggingface_hub import errors

    clients = (sys.modules.get(name) for name in ("httpx2", "httpx"))
    return (errors.HfHubHTTPError, OSError, *(c.HTTPError for c in clients if c is not None and isinstance(getattr(c, "HTTPError", None), type)))


def _hub():
    """The ``huggingface_hub`` module, or RunError saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise RunError(f"sharing runs on the Hugging Face Hub needs huggingface_hub; {INSTALL}") from None
    return huggingface_hub


def download(spec: str) -> Path:
    """The local folder (in the Hub's cache) holding the run ``hf://user/repo[@revision]``, fetching
    only ``SHARED`` files; RunError (one line) when it cannot be had."""
    repo, revision = parse(spec)
    hub = _hub()
    from huggingface_hub import errors

    try:
        folder = Path(hub.snapshot_download(repo_id=repo, revision=revision, allow_patterns=list(SHARED), library_name="reparam"))
    except errors.LocalEntryNotFoundError:
        raise RunError(f"{spec} is not in the local Hub cache and the Hub cannot be reached (offline, or HF_HUB_OFFLINE=1)") from None
    except errors.RepositoryNotFoundError:
        raise RunError(f"{spec}: no such repository on the Hub, or it is private (log in with: hf auth login)") from None
    except errors.RevisionNotFoundError:
        raise RunError(f"{spec}: the repository has no revision {revision}") from None
    except _network_errors() as e:
        raise RunError(f"{spec}: download failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise RunError(f"{spec} holds no reparam run (no {missing[0]})")
    return folder


def token() -> str:
    """The Hub token (HF_TOKEN or ``hf auth login``'s); RunError when offline or there is none."""
    hub = _hub()
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise RunError("HF_HUB_OFFLINE is set: reparam push needs the Hub; unset it")
    found = hub.get_token()
    if not found:
        raise RunError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN (a token with write access)")
    return found


def push(run_dir: Path, repo: str, card: str, private: bool, message: str) -> str:
    """Create ``repo`` if needed and commit the run's ``shared_files`` and the card as README.md in one
    commit; the commit's URL. RunError (one line) for a missing token or a refused request."""
    files = shared_files(run_dir)
    key = token()
    hub = _hub()
    ops = [hub.CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(run_dir / f)) for f in files]
    ops.append(hub.CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card.encode()))
    api = hub.HfApi(token=key, library_name="reparam")
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        info = api.create_commit(repo, ops, commit_message=message)
    except _network_errors() as e:
        raise RunError(f"push to {repo} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return str(info.commit_url)

