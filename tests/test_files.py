"""blockzoo.files: the one atomic write (checkpoints, results, reports, exports, caches, downloads)."""
from __future__ import annotations

import os

import pytest

from blockzoo.files import atomic_write, atomic_write_text
from blockzoo.train.checkpoint import remove_stale_temp_files


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "sub" / "result.json"
    atomic_write_text(p, "first\n")
    atomic_write_text(p, "second\n")
    assert p.read_text() == "second\n" and sorted(os.listdir(p.parent)) == ["result.json"]
    assert (p.stat().st_mode & 0o777) == 0o644


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    p = tmp_path / "best.safetensors"
    p.write_text("old")
    seen = []

    def write(tmp):
        seen.append(os.path.basename(tmp))
        open(tmp, "w").write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, write)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["best.safetensors"]
    # the temporary's name is the pattern a killed run's leftovers are cleaned up by
    (tmp_path / seen[0]).write_text("left by a killed process")
    assert remove_stale_temp_files(tmp_path, ("best.safetensors",)) == [seen[0]]
