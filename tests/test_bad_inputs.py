"""Every bad upload gets its own readable message; valid files uploaded alongside still get results."""

from __future__ import annotations

import numpy as np
import pytest
from bad_inputs import make_corpus
from conftest import DEMO_DIR, ROOT
from streamlit.testing.v1 import AppTest

from brainseg.inference.uploads import pair_uploads, safe_name

CASE = DEMO_DIR / "TCGA_CS_6669_20020102"
REAL_SLICE = (CASE / "TCGA_CS_6669_20020102_12.tif").read_bytes()
REAL_MASK = (CASE / "TCGA_CS_6669_20020102_12_mask.tif").read_bytes()
CORPUS = make_corpus(REAL_SLICE, REAL_MASK)
GOOD = ("good_companion.tif", REAL_SLICE)


def test_corpus_has_at_least_30_kinds():
    assert len({case.kind for case in CORPUS}) >= 30


def test_every_note_case_names_its_note():
    # an empty expected note is in every note list: such a case could never fail
    assert [c.kind for c in CORPUS if c.outcome == "note" and not c.expect] == []
    assert {c.outcome for c in CORPUS} <= {"refused", "note", "clean"}


@pytest.mark.parametrize("case", CORPUS, ids=[c.kind for c in CORPUS])
def test_library_message_and_valid_companion_survives(case):
    slices, refused = pair_uploads([*case.files, GOOD])
    names = [s.name for s in slices]
    assert "good_companion.tif" in names  # one bad file never stops the others
    if case.outcome == "refused":
        messages = [m for n, m in refused if n == case.subject]
        assert messages, f"{case.kind}: nothing refused {case.subject}; refused: {refused}"
        assert case.expect in messages[0]
        assert case.subject not in names or case.kind == "duplicate names"
    else:
        assert not [r for r in refused if r[0] == case.subject], refused
        item = next(s for s in slices if s.name == case.subject)
        assert item.image.shape == (256, 256, 3) and item.image.dtype == np.uint8
        if case.outcome == "clean":
            assert item.notes == []
        else:
            assert case.expect in " ".join(item.notes), item.notes
        if case.out_of_distribution is not None:
            assert (item.out_of_distribution is not None) == case.out_of_distribution, item.out_of_distribution
        if len(case.files) > 1 and not refused:  # a slice with its mask: the mask is paired
            assert item.mask is not None and item.mask.shape == (256, 256)


def test_file_names_never_carry_folders():
    assert safe_name("../../x.tif") == "x.tif"
    assert safe_name("..\\..\\windows\\x.tif") == "x.tif"
    assert safe_name("/etc/passwd") == "passwd"
    assert safe_name("") == "unnamed"


def test_upload_page_shows_every_message_and_keeps_serving(monkeypatch):
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("pages/upload.py").run()
    # One upload holding the whole corpus (names made unique per case) plus a valid slice.
    files = []
    expected = {}
    for k, case in enumerate(CORPUS):
        if case.kind in ("duplicate names", "over the size limit"):
            continue  # Streamlit itself refuses over-limit uploads; duplicates are covered by the library test
        for name, data in case.files:
            prefix = f"c{k}_"
            files.append((prefix + safe_name(name), data, "application/octet-stream"))
        if case.outcome == "refused":
            expected[f"c{k}_" + safe_name(case.subject)] = case.expect
    files.append(("good_companion.tif", REAL_SLICE, "image/tiff"))
    at.file_uploader(key="uploads").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    for name, message in expected.items():
        assert any(name in e and message in e for e in errors), (name, message)
    table = at.dataframe[0].value
    assert "good_companion.tif" in table["file"].tolist()
    # the app keeps serving: another page still runs
    at.switch_page("pages/dataset.py").run()
    assert not at.exception
