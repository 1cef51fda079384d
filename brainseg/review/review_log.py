"""The reviewer's log: agree / disagree / unsure per slice, with a comment, in a local SQLite file.

Each entry records when it was made, the threshold in force and the models' hashes, so a verdict can
be traced to what the reviewer was shown. SQLite in WAL mode with a busy timeout lets several
sessions write at once without losing an entry; every write is its own committed transaction, so a
page reload loses nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd

VERDICTS = ("agree", "disagree", "unsure")
COLUMNS = ["id", "created_utc", "patient_id", "slice", "verdict", "comment", "threshold", "model_hash", "reviewer"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_utc TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    slice INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'disagree', 'unsure')),
    comment TEXT NOT NULL DEFAULT '',
    threshold REAL NOT NULL,
    model_hash TEXT NOT NULL,
    reviewer TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS review_slice ON review (patient_id, slice);
"""


class ReviewLog:
    """A review log stored at ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0)

    def add(self, patient_id: str, slice_number: int, verdict: str, threshold: float, model_hash: str,
            comment: str = "", reviewer: str = "") -> int:
        """Store one verdict; returns its id."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        created = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        with closing(self._connect()) as db, db:
            cursor = db.execute(
                "INSERT INTO review (created_utc, patient_id, slice, verdict, comment, threshold, model_hash, reviewer)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (created, patient_id, int(slice_number), verdict, comment, float(threshold), model_hash, reviewer),
            )
            return int(cursor.lastrowid)

    def entries(self, patient_id: str | None = None) -> pd.DataFrame:
        query, args = "SELECT * FROM review", ()
        if patient_id is not None:
            query, args = query + " WHERE patient_id = ?", (patient_id,)
        with closing(self._connect()) as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        return pd.DataFrame(rows, columns=COLUMNS)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        self.entries().to_csv(buffer, index=False, quoting=csv.QUOTE_NONNUMERIC)
        return buffer.getvalue()
