"""Atomic file writes: a reader never sees part of a file, a failed write leaves the old one and no temporary."""

import stat

import pytest

from brainseg.core.files import write_atomically


def test_a_written_file_is_whole_and_readable_by_others(tmp_path):
    path = tmp_path / "new" / "entry.bin"
    write_atomically(path, lambda handle: handle.write(b"payload"))
    assert path.read_bytes() == b"payload"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600
    assert [p.name for p in path.parent.iterdir()] == ["entry.bin"]


def test_a_write_that_fails_half_way_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "entry.bin"
    path.write_bytes(b"old")

    def half_then_fail(handle):
        handle.write(b"half of the n")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.bin"]
