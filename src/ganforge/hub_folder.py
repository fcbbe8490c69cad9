"""The Hub model folder as ganforge reads it, and ``hf:OWNER/NAME`` downloads: below
:mod:`ganforge.generate`, whose ``load`` takes such a folder or name. The folder itself (what
each file holds) and how a run becomes one: :mod:`ganforge.hub`.

Only JSON and safetensors are read: nothing is unpickled, and a weights file that does not fit
the nets built from config.json is a one-line error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Config
from .errors import GanforgeError

FORMAT = 1  # the folder layout's version: a newer one is refused with "upgrade ganforge"
WEIGHTS = "model.safetensors"
DOWNLOAD = ("config.json", WEIGHTS, "classes.json")  # what load("hf:...") fetches
SPEC_PREFIX = "hf:"
INSTALL_HINT = 'pip install "ganforge[hub]"'
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO = re.compile(rf"{_PART}/{_PART}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}")
# exception class names (anywhere in the cause chain) that mean "the Hub was not reached"
CONNECTION = {"ConnectError", "ConnectionError", "ConnectTimeout", "TimeoutException",
              "Timeout", "NetworkError", "ProxyError", "LocalEntryNotFoundError"}


# --- names --------------------------------------------------------------------------------


def parse_repo(text: str, revision_ok: bool = True) -> tuple[str, str | None]:
    """``OWNER/NAME`` or ``OWNER/NAME@REVISION`` (an ``hf:`` prefix allowed) -> (repo id,
    revision or None); anything else is a one-line error."""
    s = str(text)
    body = s[len(SPEC_PREFIX):] if s.startswith(SPEC_PREFIX) else s
    repo, at, rev = body.partition("@")
    if not _REPO.fullmatch(repo) or "--" in repo or ".." in repo:
        raise GanforgeError(f"{s!r} is not a Hub model name: write OWNER/NAME (letters, digits, "
                            f"'-', '_' and '.'), e.g. alice/digits-dcgan")
    if at and not revision_ok:
        raise GanforgeError(f"{s!r}: push uploads to the repository's main branch: drop @{rev}")
    if at and (not _REVISION.fullmatch(rev) or ".." in rev):
        raise GanforgeError(f"{s!r}: after @ give a branch, tag or commit, e.g. "
                            f"hf:{repo}@main")
    return repo, (rev if at else None)


def is_spec(run: str | Path) -> bool:
    """Whether ``run`` names a Hub model (``hf:OWNER/NAME[@REVISION]``), not a local path."""
    return str(run).startswith(SPEC_PREFIX) and not Path(run).exists()


def read_block(folder: Path) -> dict[str, Any] | None:
    """The "ganforge" block of ``folder/config.json``; None when absent or unreadable."""
    try:
        d = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    b = d.get("ganforge") if isinstance(d, dict) else None
    return b if isinstance(b, dict) else None


def is_hub_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`export_hub` (or downloaded from one)."""
    p = Path(path)
    return p.is_dir() and read_block(p) is not None


# --- reading a Hub folder -------------------------------------------------------------------


def resolve(run: str | Path) -> Path | None:
    """The Hub folder ``run`` names: downloaded for ``hf:OWNER/NAME[@REVISION]``, the path
    itself for a local Hub folder; None for anything else (a run folder)."""
    if is_spec(run):
        return download(str(run))
    return Path(run) if is_hub_folder(run) else None


def read_folder(folder: Path) -> tuple[Config, dict[str, Any]]:
    """The config of a Hub folder (checked as a run's is) and its "ganforge" block."""
    from .options import check_names

    block = read_block(folder)
    if block is None:
        raise GanforgeError(f"{folder} is not a ganforge model: its config.json has no "
                            f"\"ganforge\" block (make one with `ganforge push RUN OWNER/NAME` "
                            f"or `ganforge export RUN --format hub`)")
    fmt, step = block.get("format"), block.get("step", 0)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1 \
            or isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise GanforgeError(f"{folder}/config.json: its \"ganforge\" block is damaged (format "
                            f"{fmt!r}, step {step!r}): download or export the folder again")
    if fmt > FORMAT:
        raise GanforgeError(f"{folder} was written by a newer ganforge (Hub format {fmt}, this "
                            f"one reads {FORMAT}): upgrade ganforge")
    cfg = Config.load(folder / "config.json")
    check_names(cfg)
    return cfg, block


def load_weights(folder: Path, nets: dict[str, nn.Module]) -> None:
    """Fill ``nets`` ({"G"} or {"G", "F"}) from ``folder/model.safetensors`` (keys
    ``NET.param``); a file that does not fit them exactly is a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = folder / WEIGHTS
    try:
        tensors = load_file(str(file))
    except FileNotFoundError:
        raise GanforgeError(f"{file} is missing: download or export the folder again") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise GanforgeError(f"{file} is unreadable ({e}): download or export the folder "
                            f"again") from None
    groups: dict[str, dict[str, torch.Tensor]] = {name: {} for name in nets}
    for key, t in tensors.items():
        prefix, _, rest = key.partition(".")
        if prefix not in groups or not rest:
            raise GanforgeError(f"{file} holds {key!r}, not a weight of this model's "
                                f"{' and '.join(nets)}: pair each model.safetensors with its "
                                f"own config.json")
        groups[prefix][rest] = t
    for name, net in nets.items():
        own, got = net.state_dict(), groups[name]
        missing = sorted(set(own) - set(got))
        shapes = [k for k in own if k in got and own[k].shape != got[k].shape]
        extra = sorted(set(got) - set(own))
        if missing or shapes or extra:
            what = (f"no {name}.{missing[0]}" if missing else
                    f"{name}.{shapes[0]} is {tuple(got[shapes[0]].shape)}, the model wants "
                    f"{tuple(own[shapes[0]].shape)}" if shapes else f"unexpected {name}.{extra[0]}")
            raise GanforgeError(f"{file} does not fit the model built from config.json ({what}):"
                                f" pair each model.safetensors with its own config.json")
        net.load_state_dict(got)


def class_names(folder: Path) -> list[str] | None:
    """The class names of ``folder/classes.json``; None when absent or not a list."""
    try:
        names = json.loads((folder / "classes.json").read_text())
    except (OSError, ValueError):
        return None
    return [str(x) for x in names] if isinstance(names, list) else None


def version() -> str:
    """ganforge's version as installed (the package's metadata, read without importing it)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ganforge")
    except PackageNotFoundError:
        return "unknown"


# --- the Hub --------------------------------------------------------------------------------


def hub_module(what: str):
    """The huggingface_hub module; its absence is a one-line error naming ``what`` needs it."""
    try:
        import huggingface_hub
    except ImportError:
        raise GanforgeError(f"{what} needs huggingface_hub: {INSTALL_HINT}") from None
    return huggingface_hub


def error_chain(e: BaseException) -> list[BaseException]:
    """``e`` and its causes, outermost first."""
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def error_kinds(e: BaseException) -> tuple[set[str], int | None]:
    """Class names along ``e``'s cause chain, and the HTTP status it carries (if any)."""
    names: set[str] = set()
    status = None
    for x in error_chain(e):
        names |= {c.__name__ for c in type(x).__mro__}
        code = getattr(getattr(x, "response", None), "status_code", None)
        status = status or (code if isinstance(code, int) else None)
    return names, status


def error_cause(e: BaseException) -> str:
    """The innermost cause in a few words: ``ConnectError: [Errno 111] Connection refused``."""
    root = error_chain(e)[-1]
    lines = str(root).strip().splitlines()
    msg = lines[0][:120] if lines else ""
    return f"{type(root).__name__}: {msg}" if msg else type(root).__name__


def _download_error(spec: str, repo: str, revision: str | None, e: BaseException) -> str:
    names, status = error_kinds(e)
    if "RevisionNotFoundError" in names:
        return (f"{spec}: the Hub repository {repo} has no revision {revision!r}: check the "
                f"branch, tag or commit after @")
    if names & {"RepositoryNotFoundError", "GatedRepoError"} or status in (401, 403, 404):
        return (f"{spec}: no model {repo} on the Hugging Face Hub, or it is private or gated: "
                f"check the name (log in with `huggingface-cli login` or set HF_TOKEN if it "
                f"is yours)")
    if "OfflineModeIsEnabled" in names:
        return (f"{spec} is not in the Hub cache and HF_HUB_OFFLINE is set: unset "
                f"HF_HUB_OFFLINE to download it, or download the model folder and pass its path")
    if names & CONNECTION:
        return (f"could not download {spec}: no connection to the Hugging Face Hub "
                f"({error_cause(e)}): check the connection (and HF_ENDPOINT), or download the "
                f"model folder and pass its path")
    return (f"could not download {spec} ({error_cause(e)}): check the name and the "
            f"connection, or download the model folder and pass its path")


def download(spec: str) -> Path:
    """Download ``hf:OWNER/NAME[@REVISION]`` (its config.json, model.safetensors and
    classes.json) into the Hugging Face cache and return the folder."""
    repo, revision = parse_repo(spec)
    try:
        import huggingface_hub as hf
    except ImportError:
        raise GanforgeError(f"{spec}: downloading from the Hub needs huggingface_hub: "
                            f"{INSTALL_HINT} (or download the model folder and pass its "
                            f"path)") from None
    try:
        path = hf.snapshot_download(repo, revision=revision, allow_patterns=list(DOWNLOAD),
                                    library_name="ganforge", library_version=version())
    except Exception as e:  # noqa: BLE001 - every failure of the download is one line
        raise GanforgeError(_download_error(spec, repo, revision, e)) from None
    folder = Path(path)
    if read_block(folder) is None:
        raise GanforgeError(f"{spec} is not a ganforge model: its config.json is missing or "
                            f"has no \"ganforge\" block (upload one with `ganforge push RUN "
                            f"{repo}`)")
    return folder
