"""Atomic file writes (a reader never sees part of a file, a failed write leaves the old one and no temporary),
and reports' JSON text."""

import json
import stat

import pytest

from brainseg.core.files import json_text, write_atomically


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


def test_json_text_puts_arrays_of_numbers_on_one_line_and_reads_back_the_same():
    document = {"counts": [[36, 0, 25], [16, 0, 0]], "scores": [0.9, -3e-05, 1.0], "flags": [True, False, None],
                "names": ["TCGA_A", "[1,\n2]"], "empty": [], "nested": {"one": [7]}}
    text = json_text(document)
    assert json.loads(text) == document
    lines = text.splitlines()
    assert '  "scores": [0.9, -3e-05, 1.0],' in lines and '    [36, 0, 25],' in lines
    assert '  "flags": [true, false, null],' in lines and '    "one": [7]' in lines
    assert '    "TCGA_A",' in lines  # arrays holding strings keep a line per item
