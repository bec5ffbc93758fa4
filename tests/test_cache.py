"""The result store: only regular files are opened, and a miss in a notebook is one line saying what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from unetdyn.paper.cache import Cache, CacheMiss

KEY = "3f" * 32


def _stored(tmp_path) -> Cache:
    cache = Cache(tmp_path)
    cache.put(KEY, {"ssim": np.linspace(0, 1, 5)})
    return cache


@pytest.mark.parametrize("replace", ["fifo", "device", "directory"])
def test_an_entry_that_is_not_a_regular_file_is_a_miss_not_a_hang(tmp_path, replace):
    cache = _stored(tmp_path)
    entry = cache.path(KEY)
    entry.unlink()
    if replace == "fifo":
        os.mkfifo(entry)  # np.load would wait for a writer forever
    elif replace == "device":
        entry.symlink_to("/dev/zero")  # np.load would read forever
    else:
        entry.mkdir()
    start = time.perf_counter()
    with pytest.warns(UserWarning, match=f"cache entry {entry} is unusable \\(not a regular file\\)"):
        assert cache.get(KEY) is None
    assert time.perf_counter() - start < 2
    with pytest.warns(UserWarning), pytest.raises(CacheMiss, match="is not in the result store"):
        Cache(tmp_path, read_only=True).need(KEY, "the sweep")


def test_an_entry_that_cannot_be_stat_ed_is_a_miss(tmp_path):
    cache = _stored(tmp_path)
    entry = cache.path(KEY)
    entry.unlink()
    entry.symlink_to(entry)  # a loop: stat fails with ELOOP
    with pytest.warns(UserWarning, match="is unusable"):
        assert cache.get(KEY) is None


def test_a_fifo_entry_is_replaced_when_the_result_is_stored_again(tmp_path):
    cache = _stored(tmp_path)
    entry = cache.path(KEY)
    entry.unlink()
    os.mkfifo(entry)
    cache.put(KEY, {"ssim": np.arange(3.0)})
    assert np.array_equal(cache.get(KEY)["ssim"], np.arange(3.0))


def test_a_miss_says_how_to_compute_it():
    miss = CacheMiss("the trajectory of 'nb 6' is not in the result store")
    lines = miss._render_traceback_()
    assert len(lines) == 1
    assert lines[0].startswith("CacheMiss: the trajectory of 'nb 6' is not in the result store; to compute it,")
    assert "set `compute = True` in the parameters cell" in lines[0] and "`unetdyn figure NAME`" in lines[0]


def test_a_miss_in_a_notebook_run_by_hand_is_one_line_naming_its_figure(tmp_path):
    cell = f"from unetdyn.paper.cache import Cache\nCache({str(tmp_path)!r}, read_only=True).need('ab' * 32, 'the relaxation sweep')"
    code = f"from IPython.core.interactiveshell import InteractiveShell\nInteractiveShell.instance(colors='nocolor').run_cell({cell!r})"
    env = {**os.environ, "JPY_SESSION_NAME": str(tmp_path / "notebooks" / "05_relaxation.ipynb")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    shown = (run.stdout + run.stderr).strip().splitlines()
    assert shown == [
        f"CacheMiss: the relaxation sweep is not in the result store {tmp_path} (key abababababab); to compute it, "
        "set `compute = True` in the parameters cell and run the notebook again, or run `unetdyn figure 05_relaxation`"
    ]
