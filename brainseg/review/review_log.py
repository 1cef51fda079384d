"""The review store: verdicts (agree / disagree / unsure) and versioned mask corrections, with their reviewer.

One SQLAlchemy Core schema on two back ends, chosen by ``BRAINSEG_REVIEW_DB``:
- a file path: SQLite, the embedded default (WAL mode and a 30 s busy timeout, so several sessions of one
  server write at once without losing an entry);
- a SQLAlchemy URL such as ``postgresql+psycopg://user:pass@host/db``: PostgreSQL, shared by several app
  servers behind a load balancer.

Each entry records when it was made, by whom, the threshold in force and the models' hashes, so a verdict
or a correction can be traced to what the reviewer was shown. Every write is its own committed transaction
(a page reload loses nothing). Corrections are never overwritten or deleted: a new save is a new version,
numbered per slice; the (patient, slice, version) uniqueness constraint makes two simultaneous saves of one
slice get two versions instead of one overwriting the other.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from brainseg.errors import BrainsegError

VERDICTS = ("agree", "disagree", "unsure")
COLUMNS = ["id", "created_utc", "patient_id", "slice", "verdict", "comment", "threshold", "model_hash", "reviewer"]
CORRECTION_COLUMNS = ["id", "created_utc", "patient_id", "case_name", "slice", "slice_file", "version", "reviewer",
                      "classifier_sha256", "segmenter_sha256", "threshold", "started_from", "parent_version",
                      "mask_pixels", "ai_pixels", "pixels_added", "pixels_removed", "comment"]
CASCADE_START = "cascade"  # ``started_from`` of a correction drawn over the cascade's own mask

metadata = sa.MetaData()

review_table = sa.Table(
    "review", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_utc", sa.Text, nullable=False),
    sa.Column("patient_id", sa.Text, nullable=False),
    sa.Column("slice", sa.Integer, nullable=False),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("model_hash", sa.Text, nullable=False),
    sa.Column("reviewer", sa.Text, nullable=False, server_default=""),
    sa.CheckConstraint("verdict IN ('agree', 'disagree', 'unsure')", name="review_verdict"),
    sa.Index("review_slice", "patient_id", "slice"),
    sqlite_autoincrement=True,  # the schema of the earlier sqlite3 logs: ids are never reused
)

corrections_table = sa.Table(
    "corrections", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_utc", sa.Text, nullable=False),
    sa.Column("patient_id", sa.Text, nullable=False),
    sa.Column("case_name", sa.Text, nullable=False),  # the Kaggle case folder, TCGA_<site>_<id>_<date>
    sa.Column("slice", sa.Integer, nullable=False),
    sa.Column("slice_file", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("classifier_sha256", sa.Text, nullable=False),
    sa.Column("segmenter_sha256", sa.Text, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("started_from", sa.Text, nullable=False),  # 'cascade' or 'version N'
    sa.Column("parent_version", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("mask", sa.LargeBinary, nullable=False),  # np.packbits + zlib (see encode_mask)
    sa.Column("mask_pixels", sa.Integer, nullable=False),
    sa.Column("ai_pixels", sa.Integer, nullable=False),
    sa.Column("pixels_added", sa.Integer, nullable=False),  # vs the cascade's mask at ``threshold``
    sa.Column("pixels_removed", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("patient_id", "slice", "version", name="corrections_slice_version"),
    sqlite_autoincrement=True,
)


class ReviewStoreError(BrainsegError):
    """The review store cannot be opened, read or written (the message names the store, never its password)."""


def encode_mask(mask: np.ndarray) -> bytes:
    """A binary mask as ``zlib(np.packbits(mask))``: exact, 8 pixels a byte before compression.

    Chosen over PNG because it is lossless by construction, has no codec or image-mode choices that could
    change between Pillow versions, and round-trips through any database's binary column; a 256x256 mask
    is 8 KiB packed and typically a few hundred bytes after zlib. The shape is stored beside it.
    """
    return zlib.compress(np.packbits(np.asarray(mask, bool).ravel()).tobytes(), 6)


def decode_mask(blob: bytes, height: int, width: int) -> np.ndarray:
    """The inverse of ``encode_mask``: (height, width) bool."""
    bits = np.unpackbits(np.frombuffer(zlib.decompress(blob), np.uint8), count=height * width)
    return bits.reshape(height, width).astype(bool)


@dataclass(frozen=True)
class SavedCorrection:
    """What a save returns: the new row's id and its per-slice version number."""

    id: int
    version: int
    pixels_added: int
    pixels_removed: int


T = TypeVar("T")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def database_url(location: str | Path) -> sa.URL:
    """``location`` as a SQLAlchemy URL: a URL as is, a file path as ``sqlite:///<absolute path>``."""
    text = str(location)
    if "://" in text:
        try:
            return make_url(text)
        except ArgumentError as err:
            raise ReviewStoreError(f"BRAINSEG_REVIEW_DB: not a valid database URL ({err})") from err
    path = Path(text).expanduser().resolve()
    return sa.URL.create("sqlite", database=str(path))


class ReviewLog:
    """The review store at ``location`` (a file path or a SQLAlchemy URL), created on first use.

    Open one per process (the dashboard caches it with ``st.cache_resource``): it holds the engine's
    connection pool. Any storage failure is raised as ReviewStoreError with a one-line message.
    """

    def __init__(self, location: str | Path) -> None:
        self.url = database_url(location)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # Where the store is, for messages and captions (a PostgreSQL password is masked).
        self.location = self.url.database if self.is_sqlite else self.url.render_as_string(hide_password=True)
        self.path: Path | None = Path(self.url.database) if self.is_sqlite else None
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = self._create_engine()
            self._run(self._create_tables)
        except (OSError, ModuleNotFoundError) as err:
            raise ReviewStoreError(f"review store {self.location}: cannot be opened ({err})") from err

    def _create_tables(self) -> None:
        # Several processes opening a new store at once race between create_all's existence check and its
        # CREATE: one of them fails with "already exists" on the table or index another just made. Each such
        # failure means one more schema object exists, so one attempt per object (plus one) always suffices;
        # a real failure (no permission, bad server) fails on every attempt and is raised.
        schema_objects = sum(1 + len(table.indexes) for table in metadata.tables.values())
        for attempt in range(schema_objects + 1):
            try:
                metadata.create_all(self.engine, checkfirst=True)
                return
            except SQLAlchemyError:
                if attempt == schema_objects:
                    raise

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            return sa.create_engine(self.url, pool_pre_ping=True)
        engine = sa.create_engine(self.url, connect_args={"timeout": 30.0})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine

    def _run(self, action: Callable[[], T], let_integrity_errors_through: bool = False) -> T:
        """Run a storage action; a database failure becomes a one-line ReviewStoreError."""
        try:
            return action()
        except SQLAlchemyError as err:
            if let_integrity_errors_through and isinstance(err, IntegrityError):
                raise
            reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
            raise ReviewStoreError(f"review store {self.location}: {type(err).__name__}: {reason}") from err

    def close(self) -> None:
        self.engine.dispose()

    # --- verdicts ---------------------------------------------------------------------------------------
    def add(self, patient_id: str, slice_number: int, verdict: str, threshold: float, model_hash: str,
            comment: str = "", reviewer: str = "") -> int:
        """Store one verdict; returns its id."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        row = {"created_utc": _now(), "patient_id": patient_id, "slice": int(slice_number), "verdict": verdict,
               "comment": comment, "threshold": float(threshold), "model_hash": model_hash, "reviewer": reviewer}

        def insert() -> int:
            with self.engine.begin() as db:
                return int(db.execute(review_table.insert().values(**row).returning(review_table.c.id)).scalar_one())

        return self._run(insert)

    def entries(self, patient_id: str | None = None, reviewer: str | None = None) -> pd.DataFrame:
        """Verdicts in the order they were made, optionally of one patient and/or one reviewer."""
        query = sa.select(*(review_table.c[name] for name in COLUMNS)).order_by(review_table.c.id)
        if patient_id is not None:
            query = query.where(review_table.c.patient_id == patient_id)
        if reviewer is not None:
            query = query.where(review_table.c.reviewer == reviewer)
        return self._frame(query, COLUMNS)

    def reviewers(self) -> list[str]:
        """Everyone who left a verdict or a correction, sorted."""
        query = sa.union(sa.select(review_table.c.reviewer), sa.select(corrections_table.c.reviewer))
        with_names = self._frame(query, ["reviewer"])["reviewer"]
        return sorted(name for name in with_names if name)

    def to_csv(self, patient_id: str | None = None, reviewer: str | None = None) -> str:
        buffer = io.StringIO()
        self.entries(patient_id, reviewer).to_csv(buffer, index=False, quoting=csv.QUOTE_NONNUMERIC)
        return buffer.getvalue()

    # --- corrections ------------------------------------------------------------------------------------
    def save_correction(self, *, patient_id: str, case_name: str, slice_number: int, slice_file: str,
                        mask: np.ndarray, ai_mask: np.ndarray, reviewer: str, threshold: float,
                        classifier_sha256: str, segmenter_sha256: str, parent_version: int | None = None,
                        comment: str = "") -> SavedCorrection:
        """Store ``mask`` as the next version of this slice's correction (never replacing an earlier one).

        ``ai_mask`` is the cascade's mask at ``threshold``: pixels added / removed are counted against it.
        ``parent_version`` is the version the reviewer started from (None: the cascade's mask).
        """
        mask, ai_mask = np.asarray(mask, bool), np.asarray(ai_mask, bool)
        if mask.ndim != 2 or mask.shape != ai_mask.shape:
            raise ValueError(f"mask {mask.shape} and AI mask {ai_mask.shape} must be one 2-D shape")
        if not reviewer.strip():
            raise ValueError("a correction needs its reviewer's name")
        row = {
            "created_utc": _now(), "patient_id": patient_id, "case_name": case_name, "slice": int(slice_number),
            "slice_file": slice_file, "reviewer": reviewer, "classifier_sha256": classifier_sha256,
            "segmenter_sha256": segmenter_sha256, "threshold": float(threshold),
            "started_from": CASCADE_START if parent_version is None else f"version {int(parent_version)}",
            "parent_version": None if parent_version is None else int(parent_version),
            "height": mask.shape[0], "width": mask.shape[1], "mask": encode_mask(mask),
            "mask_pixels": int(mask.sum()), "ai_pixels": int(ai_mask.sum()),
            "pixels_added": int((mask & ~ai_mask).sum()), "pixels_removed": int((ai_mask & ~mask).sum()),
            "comment": comment,
        }
        c = corrections_table.c
        next_version = (sa.select(sa.func.coalesce(sa.func.max(c.version), 0) + 1)
                        .where(c.patient_id == patient_id, c.slice == int(slice_number)).scalar_subquery())

        def insert() -> tuple[int, int]:
            with self.engine.begin() as db:
                inserted = db.execute(corrections_table.insert().values(**row, version=next_version)
                                      .returning(c.id, c.version)).one()
                return int(inserted[0]), int(inserted[1])

        # Two writers may compute the same next version at once: the unique constraint refuses the second,
        # which then retries with the version after the first's.
        for _attempt in range(20):
            try:
                new_id, version = self._run(insert, let_integrity_errors_through=True)
                break
            except IntegrityError:
                continue
        else:
            raise ReviewStoreError(f"review store {self.location}: could not number a new correction version "
                                   f"of {patient_id} slice {slice_number} (too many simultaneous saves)")
        return SavedCorrection(new_id, version, row["pixels_added"], row["pixels_removed"])

    def corrections(self, patient_id: str | None = None, reviewer: str | None = None,
                    slice_number: int | None = None) -> pd.DataFrame:
        """Every correction version (without the mask bytes), oldest first."""
        c = corrections_table.c
        query = sa.select(*(c[name] for name in CORRECTION_COLUMNS)).order_by(c.id)
        if patient_id is not None:
            query = query.where(c.patient_id == patient_id)
        if reviewer is not None:
            query = query.where(c.reviewer == reviewer)
        if slice_number is not None:
            query = query.where(c.slice == int(slice_number))
        frame = self._frame(query, CORRECTION_COLUMNS)
        return frame.astype({"parent_version": "Int64"})

    def correction_mask(self, correction_id: int) -> np.ndarray:
        """The stored mask of one correction version, (H, W) bool."""
        c = corrections_table.c
        query = sa.select(c.mask, c.height, c.width).where(c.id == int(correction_id))

        def fetch():
            with self.engine.connect() as db:
                return db.execute(query).one_or_none()

        found = self._run(fetch)
        if found is None:
            raise ReviewStoreError(f"review store {self.location}: no correction with id {correction_id}")
        return decode_mask(found[0], found[1], found[2])

    def latest_corrections(self, patient_id: str | None = None) -> pd.DataFrame:
        """The latest version of each corrected slice, with its decoded mask (column ``mask``)."""
        versions = self.corrections(patient_id)
        if versions.empty:
            return versions.assign(mask=pd.Series(dtype=object), n_versions=pd.Series(dtype=int),
                                   reviewers=pd.Series(dtype=object))
        versions = versions.sort_values(["patient_id", "slice", "version"], kind="stable")
        grouped = versions.groupby(["patient_id", "slice"], sort=True)
        latest = grouped.tail(1).sort_values(["patient_id", "slice"]).copy()
        history = grouped.agg(n_versions=("version", "size"),
                              reviewers=("reviewer", lambda names: sorted(set(names)))).reset_index()
        latest = latest.merge(history, on=["patient_id", "slice"])
        latest["mask"] = [self.correction_mask(i) for i in latest["id"]]
        return latest.reset_index(drop=True)

    def _frame(self, query, columns: list[str]) -> pd.DataFrame:
        def fetch() -> list:
            with self.engine.connect() as db:
                return db.execute(query).all()

        return pd.DataFrame([tuple(r) for r in self._run(fetch)], columns=columns)
