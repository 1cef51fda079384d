"""The review store on SQLite (embedded default) and PostgreSQL (a throwaway server): the same tests on both.

PostgreSQL cases carry ``postgres`` in their names (``-k postgres``); see tests/pg_support.py for the server.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from pg_support import postgres_cluster, reset_database

from brainseg.review.review_log import ReviewLog, ReviewStoreError, decode_mask, encode_mask

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path) -> str:
    """A fresh, empty store: a SQLite file, or the PostgreSQL test database with its tables dropped."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "review.sqlite")
    url = request.getfixturevalue("postgres_url")
    reset_database(url)
    return url


def _mask(seed: int, shape=(256, 256)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) > 0.7


def test_mask_encoding_is_exact_and_compact():
    mask = np.zeros((256, 256), bool)
    mask[100:140, 90:150] = True
    blob = encode_mask(mask)
    assert np.array_equal(decode_mask(blob, 256, 256), mask)
    assert len(blob) < 1000  # a blob-shaped tumor mask: far under the 8 KiB of packed bits
    noisy = _mask(3, (7, 13))  # odd sizes: packbits pads the last byte
    assert np.array_equal(decode_mask(encode_mask(noisy), 7, 13), noisy)


def test_verdicts_record_their_reviewer_and_filter(location):
    log = ReviewLog(location)
    log.add("P1", 3, "agree", 0.42, "h1", "fine", reviewer="ann")
    log.add("P1", 4, "disagree", 0.42, "h1", "too wide", reviewer="bob")
    log.add("P2", 7, "unsure", 0.5, "h1", reviewer="ann")
    reopened = ReviewLog(location)  # a new engine, as after a server restart
    entries = reopened.entries()
    assert entries[["patient_id", "slice", "verdict", "reviewer"]].values.tolist() == [
        ["P1", 3, "agree", "ann"], ["P1", 4, "disagree", "bob"], ["P2", 7, "unsure", "ann"]]
    assert entries["threshold"].tolist() == pytest.approx([0.42, 0.42, 0.5])
    assert reopened.entries(reviewer="ann")["slice"].tolist() == [3, 7]
    assert reopened.entries("P1", "bob")["comment"].tolist() == ["too wide"]
    assert reopened.reviewers() == ["ann", "bob"]
    csv_text = reopened.to_csv(reviewer="bob")
    assert csv_text.splitlines()[0].startswith('"id","created_utc","patient_id"') and '"reviewer"' in csv_text
    assert len(csv_text.splitlines()) == 2
    with pytest.raises(ValueError, match="verdict"):
        reopened.add("P1", 3, "maybe", 0.5, "h1")


def test_corrections_are_versioned_never_overwritten(location):
    log = ReviewLog(location)
    ai = _mask(0)
    first, second = _mask(1), _mask(2)
    common = {"patient_id": "P1", "case_name": "TCGA_CS_0001_20000101", "slice_number": 12,
              "slice_file": "TCGA_CS_0001_20000101_12.tif", "ai_mask": ai, "threshold": 0.3,
              "classifier_sha256": "c" * 64, "segmenter_sha256": "s" * 64}
    v1 = log.save_correction(**common, mask=first, reviewer="ann")
    v2 = log.save_correction(**common, mask=second, reviewer="bob", parent_version=1, comment="tighter")
    other = log.save_correction(**{**common, "slice_number": 13}, mask=first, reviewer="ann")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.pixels_added == int((first & ~ai).sum()) and v1.pixels_removed == int((ai & ~first).sum())
    history = log.corrections("P1", slice_number=12)
    assert history[["version", "reviewer", "started_from"]].values.tolist() == [
        [1, "ann", "cascade"], [2, "bob", "version 1"]]
    assert history["parent_version"].isna().tolist() == [True, False]
    assert np.array_equal(log.correction_mask(v1.id), first)  # the first version is still there, unchanged
    assert np.array_equal(log.correction_mask(v2.id), second)
    latest = log.latest_corrections()
    assert latest[["slice", "version", "n_versions"]].values.tolist() == [[12, 2, 2], [13, 1, 1]]
    assert latest["reviewers"].iloc[0] == ["ann", "bob"]
    assert np.array_equal(latest["mask"].iloc[0], second)
    assert log.corrections(reviewer="bob")["id"].tolist() == [v2.id]
    assert log.reviewers() == ["ann", "bob"]
    with pytest.raises(ValueError, match="reviewer"):
        log.save_correction(**common, mask=first, reviewer=" ")


_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from brainseg.review.review_log import ReviewLog

    location, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = ReviewLog(location)
    mask = np.zeros((16, 16), bool)
    for k in range(count):
        log.add("TCGA_CS_0001", k, "agree", 0.5, "hash", comment=f"worker {worker}", reviewer=f"r{worker}")
        mask[k % 16, :] = True
        log.save_correction(patient_id="TCGA_CS_0001", case_name="TCGA_CS_0001_20000101", slice_number=1,
                            slice_file="TCGA_CS_0001_20000101_1.tif", mask=mask, ai_mask=np.zeros_like(mask),
                            reviewer=f"r{worker}", threshold=0.5, classifier_sha256="c", segmenter_sha256="s")
""")


def test_two_processes_writing_at_once_lose_nothing(location, tmp_path):
    """Two separate writer processes (as two app servers would be) on one store: every row arrives, ids and
    the per-slice correction versions stay unique."""
    ReviewLog(location)  # create the schema first, as the first app server would
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    count = 30
    writers = [subprocess.Popen([sys.executable, str(script), location, str(w), str(count)],
                                stderr=subprocess.PIPE, text=True) for w in range(2)]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    log = ReviewLog(location)
    entries = log.entries()
    assert len(entries) == 2 * count and entries["id"].is_unique
    assert entries.groupby("reviewer").size().to_dict() == {"r0": count, "r1": count}
    versions = log.corrections("TCGA_CS_0001", slice_number=1)
    assert len(versions) == 2 * count and versions["id"].is_unique
    assert sorted(versions["version"]) == list(range(1, 2 * count + 1))  # no version lost or shared
    assert versions.groupby("reviewer").size().to_dict() == {"r0": count, "r1": count}


def test_opening_races_another_process_creating_the_tables(location):
    """Two app servers opening a new store at once: the other one creates each table between this one's
    existence check and its CREATE (the race that failed CI once). Opening must still succeed and work."""
    from brainseg.review.review_log import database_url, metadata

    other_server = sa.create_engine(database_url(location))
    raced = []

    def create_it_first(table, _connection, **_kw):
        with other_server.begin() as db:
            db.execute(sa.schema.CreateTable(table))  # a DDL construct: does not re-fire this event
        raced.append(table.name)

    tables = list(metadata.tables.values())
    for table in tables:
        sa.event.listen(table, "before_create", create_it_first)
    try:
        log = ReviewLog(location)
    finally:
        for table in tables:
            sa.event.remove(table, "before_create", create_it_first)
        other_server.dispose()
    assert sorted(raced) == sorted(metadata.tables)  # every table's CREATE really lost the race
    log.add("P", 1, "agree", 0.5, "h")
    assert log.entries()["slice"].tolist() == [1]


def test_storage_failure_is_a_one_line_error(location, tmp_path):
    if location.startswith("postgresql"):
        bad = location.replace("host=", "host=/nonexistent")  # no server there
    else:
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        bad = str(blocker / "review.sqlite")  # its folder is a file
    with pytest.raises(ReviewStoreError) as caught:
        ReviewLog(bad)
    assert "\n" not in str(caught.value) and "review store" in str(caught.value)


def test_a_password_in_the_url_is_never_shown():
    log_url = "postgresql+psycopg://ann:s3cret@127.0.0.1:1/brainseg"
    with pytest.raises(ReviewStoreError) as caught:
        ReviewLog(log_url)
    assert "s3cret" not in str(caught.value)


def test_default_store_is_outside_the_package(monkeypatch, tmp_path):
    from brainseg import settings

    monkeypatch.delenv(settings.REVIEW_DB_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    default = Path(settings.review_db())
    package = Path(settings.__file__).resolve().parent
    assert package not in default.parents and tmp_path / "xdg" in default.parents
    assert default.name == "review_log.sqlite"
    monkeypatch.setenv(settings.REVIEW_DB_ENV, "postgresql+psycopg://u@h/db")
    assert settings.review_db() == "postgresql+psycopg://u@h/db"


def test_a_log_written_by_the_earlier_sqlite3_code_opens_and_grows(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE review (id INTEGER PRIMARY KEY AUTOINCREMENT, created_utc TEXT NOT NULL,
                patient_id TEXT NOT NULL, slice INTEGER NOT NULL,
                verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'disagree', 'unsure')),
                comment TEXT NOT NULL DEFAULT '', threshold REAL NOT NULL, model_hash TEXT NOT NULL,
                reviewer TEXT NOT NULL DEFAULT '');
            INSERT INTO review (created_utc, patient_id, slice, verdict, threshold, model_hash)
                VALUES ('2026-01-01T00:00:00.000+00:00', 'P', 1, 'agree', 0.5, 'h');
        """)
    log = ReviewLog(path)
    log.add("P", 2, "unsure", 0.5, "h", reviewer="ann")
    assert log.entries()[["id", "slice", "reviewer"]].values.tolist() == [[1, 1, ""], [2, 2, "ann"]]
    assert log.corrections().empty  # the corrections table was added beside it
