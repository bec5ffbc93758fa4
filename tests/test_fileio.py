"""Atomic writes: a reader never sees a half-written file, and a killed writer's leftovers go."""

from __future__ import annotations

import subprocess
import sys

from unetdyn.fileio import atomic_write


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "entry.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".entry.npz.tmp{int(dead.stdout)}"  # that process has exited
    stale.write_bytes(b"half")
    other = tmp_path / ".other.npz.tmp1"  # another file's, pid 1 alive: left alone
    other.write_bytes(b"x")
    atomic_write(target, lambda p: p.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"
    assert not stale.exists() and other.exists()


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def fail(p):
        p.write_text("partial")
        raise RuntimeError("disk full")

    try:
        atomic_write(target, fail)
    except RuntimeError:
        pass
    assert target.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]
