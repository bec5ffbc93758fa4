"""One content-keyed store for every result the book shows.

An entry is ``<root>/<key[:2]>/<key>.npz``: named arrays plus a ``__meta__`` record holding
the entry's own key, the names, dtypes and shapes of its arrays and a checksum of their
bytes. :meth:`Cache.get` trusts an entry only when all of that matches what the caller
asked for; anything else (a truncated file, a copy of another key's entry, arrays of the
wrong shape) is reported and treated as missing, so it is recomputed and replaced. Entries
are written atomically, so an interrupted run keeps every entry it finished.

Keys come from :func:`content_key`: a hash of a JSON description of everything the result
depends on (weights checksum, sampler config, samples, interventions, schema version).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unetdyn.fileio import atomic_write

__all__ = ["SCHEMA_VERSION", "Cache", "CacheMiss", "content_key", "model_id", "array_digest"]

SCHEMA_VERSION = 1


class CacheMiss(LookupError):
    """A result the caller needs is not in the store (and the caller may not compute it).

    In IPython (a notebook run by hand, by nbconvert or by papermill) it shows as one line
    that says how to compute the result, instead of a traceback through the sweep code.
    """

    def hint(self) -> str:
        """How to compute what is missing, from a notebook."""
        session = Path(os.environ.get("JPY_SESSION_NAME", "")).stem  # Jupyter's name of the running notebook
        figure = f"`unetdyn figure {session}`" if session else "`unetdyn figure NAME` (NAME: the notebook's name)"
        return f"set `compute = True` in the parameters cell and run the notebook again, or run {figure}"

    def _render_traceback_(self) -> list[str]:
        """IPython's hook for showing an exception: one line, the message and the fix, no traceback."""
        return [f"CacheMiss: {self}; to compute it, {self.hint()}"]


def content_key(description: Mapping[str, Any]) -> str:
    """The key of a result: the sha256 of its description as canonical JSON.

    Example:
        >>> content_key({"b": 1, "a": [2]}) == content_key({"a": [2], "b": 1})
        True
    """
    return hashlib.sha256(json.dumps(dict(description), sort_keys=True).encode()).hexdigest()


def model_id(unet) -> str:
    """A checksum of the Unet's weights (what a cached result depends on)."""
    recorded = getattr(unet, "weights_sha256", None)
    if recorded:
        return str(recorded)
    h = hashlib.sha256()
    module = unet if hasattr(unet, "state_dict") else unet.model  # GlideUnet wraps one
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def array_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """The sha256 of named arrays: their names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _layout(arrays: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    return {k: list(np.shape(v)) for k, v in sorted(arrays.items())}


class Cache:
    """A folder of entries, each verified against its key, its layout and its checksum on load.

    Args:
        root: the folder.
        read_only: a miss raises :class:`CacheMiss` from :meth:`need` and :meth:`put` refuses
            to write (building the book must compute nothing).
    """

    def __init__(self, root: str | Path, read_only: bool = False):
        self.root = Path(root)
        self.read_only = read_only

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str, expect: Mapping[str, tuple[int, ...] | None] | None = None) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None if absent or untrustworthy.

        Args:
            expect: array name -> shape the caller needs (None: any shape; a None dimension:
                any size). An entry with other names or shapes is treated like a corrupt one.
        """
        p = self.path(key)
        try:
            mode = os.stat(p).st_mode
        except FileNotFoundError:
            return None
        except OSError as exc:
            warnings.warn(f"cache entry {p} is unusable ({exc.strerror or exc}); it will be recomputed", stacklevel=2)
            return None
        if not stat.S_ISREG(mode):  # np.load would block on a FIFO or read a device forever
            warnings.warn(f"cache entry {p} is unusable (not a regular file); it will be recomputed", stacklevel=2)
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(bytes(arrays.pop("__meta__")).decode())
            if meta.get("schema") != SCHEMA_VERSION:
                raise ValueError(f"schema {meta.get('schema')} is not {SCHEMA_VERSION}")
            if meta.get("key") != key:
                raise ValueError("it was stored under another key")
            if meta.get("digest") != array_digest(arrays):
                raise ValueError("checksum mismatch")
            if expect is not None:
                if set(expect) != set(arrays):
                    raise ValueError(f"arrays {sorted(arrays)} are not the expected {sorted(expect)}")
                for name, shape in expect.items():
                    got = arrays[name].shape
                    if shape is not None and (len(got) != len(shape) or any(e not in (None, g) for e, g in zip(shape, got))):
                        raise ValueError(f"{name} has shape {got}, expected {tuple(shape)}")
        except Exception as exc:  # noqa: BLE001 - any failure means: do not trust it
            warnings.warn(f"cache entry {p} is unusable ({exc}); it will be recomputed", stacklevel=2)
            return None
        return arrays

    def need(self, key: str, what: str, expect: Mapping[str, tuple[int, ...] | None] | None = None) -> dict[str, np.ndarray]:
        """Like :meth:`get`, but a miss raises :class:`CacheMiss` naming ``what`` is missing."""
        hit = self.get(key, expect)
        if hit is None:
            raise CacheMiss(f"{what} is not in the result store {self.root} (key {key[:12]})")
        return hit

    def get_record(self, key: str) -> dict | None:
        """A JSON record (a benchmark's table and metadata) stored by :meth:`put_record`, or None."""
        hit = self.get(key, {"record": None})
        return None if hit is None else json.loads(bytes(hit["record"]).decode())

    def put_record(self, key: str, record: dict, info: dict | None = None) -> Path:
        """Store a JSON-serialisable record under ``key`` (atomically, like any entry)."""
        blob = json.dumps(record, allow_nan=True).encode()
        return self.put(key, {"record": np.frombuffer(blob, dtype=np.uint8)}, info)

    def put(self, key: str, arrays: Mapping[str, np.ndarray], info: dict | None = None) -> Path:
        """Store ``arrays`` under ``key`` atomically (temporary file, then rename)."""
        if self.read_only:
            raise CacheMiss(f"the result store {self.root} is read-only here; refusing to write {key[:12]}")
        meta = {"schema": SCHEMA_VERSION, "key": key, "layout": _layout(arrays), "digest": array_digest(arrays),
                "info": info or {}}
        buf = io.BytesIO()
        np.savez_compressed(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        return atomic_write(self.path(key), lambda tmp: tmp.write_bytes(buf.getvalue()))
