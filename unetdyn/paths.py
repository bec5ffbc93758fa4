"""Every path the project reads or writes by default, in one place."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["REPO_ROOT", "DATA_DIR", "BUILTIN_DIR", "BUILTIN_WEIGHTS", "FAMILY_DIR", "RUNS_DIR", "CACHE_DIR", "NOTEBOOKS_DIR",
           "BOOK_DIR", "is_builtin", "member_name", "member_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
BUILTIN_DIR = DATA_DIR / "builtin"
BUILTIN_WEIGHTS = BUILTIN_DIR / "unet.safetensors"  # checksum beside it: unet.safetensors.sha256
FAMILY_DIR = DATA_DIR / "family"  # the other built-in models, one folder each (laid out as BUILTIN_DIR)
RUNS_DIR = REPO_ROOT / "runs"  # training runs (ignored by git)
CACHE_DIR = DATA_DIR / "cache"  # sweep results (the book's defaults are committed)
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"  # papermill sources
BOOK_DIR = REPO_ROOT / "book"  # chapters and the executed notebooks

_MEMBER = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def is_builtin(model: str) -> bool:
    """Whether ``model`` names the shipped built-in model (``builtin``) or a member of its family (``builtin:NAME``)."""
    return isinstance(model, str) and (model == "builtin" or model.startswith("builtin:"))


def member_name(model: str) -> str | None:
    """``builtin`` -> None (the shipped model); ``builtin:NAME`` -> NAME, checked; else a ValueError.

    Example:
        >>> member_name("builtin"), member_name("builtin:seed1")
        (None, 'seed1')
        >>> member_name("builtin:../x")
        Traceback (most recent call last):
        ...
        ValueError: model='builtin:../x': a member's name is 1..40 of a-z, 0-9, _ and -, starting with a letter or digit
    """
    if model == "builtin":
        return None
    if not is_builtin(model):
        raise ValueError(f"model={model!r} is not builtin or builtin:NAME")
    name = model.split(":", 1)[1]
    if not _MEMBER.fullmatch(name):
        raise ValueError(f"model={model!r}: a member's name is 1..40 of a-z, 0-9, _ and -, starting with a letter or digit")
    return name


def member_dir(model: str, family: Path = FAMILY_DIR) -> Path:
    """The folder of ``builtin`` (``data/builtin``) or of ``builtin:NAME`` (``data/family/NAME``), laid out alike."""
    name = member_name(model)
    return BUILTIN_DIR if name is None else family / name
