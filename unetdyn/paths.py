"""Every path the project reads or writes by default, in one place."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "DATA_DIR", "BUILTIN_DIR", "BUILTIN_WEIGHTS", "RUNS_DIR", "CACHE_DIR", "NOTEBOOKS_DIR", "BOOK_DIR"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
BUILTIN_DIR = DATA_DIR / "builtin"
BUILTIN_WEIGHTS = BUILTIN_DIR / "unet.safetensors"  # checksum beside it: unet.safetensors.sha256
RUNS_DIR = REPO_ROOT / "runs"  # training runs (ignored by git)
CACHE_DIR = DATA_DIR / "cache"  # sweep results (the book's defaults are committed)
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"  # papermill sources
BOOK_DIR = REPO_ROOT / "book"  # chapters and the executed notebooks
