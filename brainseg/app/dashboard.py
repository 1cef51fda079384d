"""Streamlit glue shared by the pages: cached loaders, the session's settings, and the sidebar.

Models and per-patient predictions are held once per process (``st.cache_resource``, the predictions' arrays
read-only, shared by every session); scans and small derived tables are cached as data (``st.cache_data``). Every
per-patient cache is keyed by the patient's files (``patient_files_key``), so a slice rewritten on disk is read
again. The threshold and the data folder live in ``st.session_state`` so every page reads and writes the same values.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from brainseg import settings
from brainseg.core.data import (
    CLINICAL_TABLE,
    case_folders,
    load_slices,
    manifest_of_cases,
    patient_table,
    scan_case,
)
from brainseg.core.split import PARTS, is_final_fit, trained_on
from brainseg.errors import BrainsegError, DataError
from brainseg.evaluation.operating_point import (
    STORED_DECIMALS,
    chosen_on_words,
    floor_decimals,
    threshold_decimals,
)
from brainseg.evaluation.operating_point import threshold_text as format_threshold  # the pages' name for it
from brainseg.evaluation.threshold_analysis import slice_stats
from brainseg.inference.cascade import DEFAULT_THRESHOLD, Cascade, CascadeResult, read_operating_point

RESEARCH_NOTICE = ("**Research use only — not for diagnosis.** Outputs are model estimates for research and "
                   "education, not a medical device.")


MODELS_CHOICE_KEY = "models_dir"


def models_dir():
    """The live models folder: the session's choice among ``settings.model_folder_choices()`` when it made one,
    else the configured one (raises SettingsError with what to set when there is none)."""
    chosen = st.session_state.get(MODELS_CHOICE_KEY)
    if chosen and Path(chosen) in settings.model_folder_choices():
        return Path(chosen)
    return settings.models_dir()


def operating_point_digest(models_path: str | Path) -> str:
    """A digest of the folder's ``operating_point.json`` (threshold, slice score, mask cut), or "none"."""
    path = Path(models_path) / "operating_point.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "none"


def live_cascade() -> Cascade:
    """The live folder's cascade; loaded again when its operating point is rewritten (the slice score and mask cut
    it holds shape every result)."""
    path = str(models_dir())
    return get_cascade(path, operating_point_digest(path))


@st.cache_resource(show_spinner="Loading models…")
def get_cascade(models_path: str, operating_point: str = "") -> Cascade:
    """One cascade per process and operating point, shared by every session (the models are never copied per user).

    Each load prints one ``brainseg: models loaded`` line with the process id and the object's id, so the
    server log shows how many model copies a process ever made (the concurrency test counts them).
    """
    cascade = Cascade.from_dir(models_path)
    print(f"brainseg: models loaded in process {os.getpid()} as object {id(cascade)} from {models_path}",
          file=sys.stderr, flush=True)
    return cascade


# How stale a mask rewritten in place (a file changed, no folder changed) may be shown: the dashboard looks at
# every file's size and time (a few thousand stats, ~20-60 ms) at most this often, not on every rerun.
FILE_RECHECK_SECONDS = 30


def get_dataset(data_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The folder's manifest and patients. A case added, removed or renamed shows on the next run
    (``folder_signature``); a file rewritten in place within ``FILE_RECHECK_SECONDS`` (``case_stamps``). Only the
    cases whose files changed are read again (the scan reads every mask), the others come from the cache."""
    signature = folder_signature(data_dir)  # also holds data.csv's time: a rewritten table is read on the next run
    return _assembled_dataset(data_dir, case_stamps(data_dir, signature), signature)


@st.cache_data(show_spinner="Scanning the dataset folder…", max_entries=16)
def _assembled_dataset(data_dir: str, stamps: tuple[tuple[str, str], ...],
                       signature: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``get_dataset``'s cached body; ``signature`` is only part of the key (for ``data.csv``'s time)."""
    manifest = manifest_of_cases(_scanned_case(str(Path(data_dir) / case), stamp) for case, stamp in stamps)
    csv = Path(data_dir) / CLINICAL_TABLE
    return manifest, patient_table(manifest, csv if csv.exists() else None)


# One entry per case and version of its files; a few hundred KB for the whole dataset.
@st.cache_data(show_spinner=False, max_entries=4096)
def _scanned_case(case_dir: str, stamp: str) -> pd.DataFrame:
    return scan_case(case_dir)


@st.cache_data(show_spinner=False, ttl=FILE_RECHECK_SECONDS, max_entries=16)
def case_stamps(data_dir: str, signature: tuple) -> tuple[tuple[str, str], ...]:
    """Each case folder's name and a digest of its files' names, sizes and times (ns): a case whose digest
    changed is scanned again. Cached for ``FILE_RECHECK_SECONDS`` per ``folder_signature``."""
    stamps = []
    try:
        for case_dir in case_folders(data_dir):
            with os.scandir(case_dir) as entries:
                files = sorted((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns) for entry in entries)
            stamps.append((case_dir.name, hashlib.sha256(repr(files).encode()).hexdigest()[:16]))
    except OSError as err:  # a file or case removed while it was listed, or unreadable: say so, as the scan would
        raise DataError(f"{data_dir}: cannot be read ({err})") from err
    return tuple(stamps)


def folder_signature(data_dir: str) -> tuple:
    """The modification times (ns) of the folder, of each case folder in it and of ``data.csv``: a file added to,
    removed from or renamed in a folder changes that folder's time. A few dozen stats, cheap on every rerun."""
    root = Path(data_dir)
    try:
        entries = [(".", root.stat().st_mtime_ns)] + [
            (entry.name, entry.stat().st_mtime_ns) for entry in os.scandir(root)
            if entry.name == CLINICAL_TABLE or entry.is_dir()]
    except OSError:
        return ("unreadable", time.monotonic_ns())  # never a hit: the scan reports what is wrong
    return tuple(sorted(entries))


def patient_rows(data_dir: str, patient_id: str) -> pd.DataFrame:
    """The manifest's rows of one patient (from the folder's cached scan)."""
    manifest, _ = get_dataset(data_dir)
    return manifest[manifest["patient_id"] == patient_id]


def patient_files_key(rows: pd.DataFrame) -> str:
    """A digest of the patient's files as they are now: each slice's image and mask file name, size and mtime
    (ns), the prediction store's ``InputIdentity``. Part of every per-patient cache key, so a rewritten slice
    (even a ``touch``) is a miss and is read again, never a stale image or score. Stat before reading, as the
    store does: a file rewritten in between gives a new key next time."""
    from brainseg.inference.store import InputIdentity

    try:
        images = InputIdentity.of(rows)
        masks = InputIdentity.of(rows[["mask_path"]].rename(columns={"mask_path": "image_path"}))
    except OSError:
        # A file gone or unreadable: a key that never hits, so the load below reports it as it always did.
        return f"unreadable-{time.monotonic_ns()}"
    return hashlib.sha256(repr((images, masks)).encode()).hexdigest()[:16]


def _store_key() -> str:
    """Whether (and where) results come from a prediction store: its outputs are quantised, the live ones not."""
    return str(settings.prediction_store())


def get_patient_prediction(data_dir: str, patient_id: str, models_key: str) -> Mapping[str, Any]:
    """Decoded slices, truth masks and the cascade's stored outputs (``result``) for one patient.

    ``models_key`` (the weights' hashes) makes a model change invalidate the cache, the files' identity
    (``patient_files_key``) a rewritten slice. The result keeps the float32 maps the cascade made, so the
    dashboard's masks are exactly `brainseg evaluate`'s. The object is shared by every session and read-only
    (its arrays cannot be written; copy one to change it).
    """
    rows = patient_rows(data_dir, patient_id)
    return _patient_prediction(data_dir, patient_id, models_key, patient_files_key(rows), _store_key(), rows)


# A resource, not data: st.cache_data unpickled a fresh ~40 MB copy on every hit and lost the result's computed
# masks (small-component removal ran again, ~0.1 s per hit). 12 patients kept, as before (~45 MB each for 88
# slices: images, truth, maps and masks).
@st.cache_resource(show_spinner=False, max_entries=12)
def _patient_prediction(data_dir: str, patient_id: str, models_key: str, files_key: str, store_key: str,
                        _rows: pd.DataFrame) -> Mapping[str, Any]:
    """``get_patient_prediction``'s cached body (``_rows``: the rows ``files_key`` was taken from; not hashed)."""
    images, truth = load_slices(_rows)
    cascade, store = live_cascade(), prediction_store()
    # With $BRAINSEG_STORE: the stored outputs, or the patient scored into the store now (the next server too).
    result = (cascade.predict(images, _rows["slice"].to_numpy()) if store is None
              else store.result_or_score(cascade, _rows, images))
    # Computed here, once, before any session sees the object (cached_property has no lock).
    shared = [images, truth, result.classifier_probabilities, result.maps, result.probabilities,
              result.segmenter_masks(), result.slice_numbers]
    for array in shared:
        if isinstance(array, np.ndarray):
            array.flags.writeable = False  # shared by every session: a write fails loudly, never leaks into another
    return MappingProxyType({"rows": _rows.reset_index(drop=True), "images": images, "truth": truth,
                             "result": result})


def prediction_store():
    """The prediction store at $BRAINSEG_STORE, or None (then the cascade runs in this process)."""
    from brainseg.inference.store import PredictionStore

    folder = settings.prediction_store()
    return None if folder is None else PredictionStore(folder)


def patient_result(prediction: Mapping[str, Any]) -> CascadeResult:
    return prediction["result"]


def get_patient_stats(data_dir: str, patient_id: str, models_key: str) -> pd.DataFrame:
    """Per-slice counts for the threshold analysis (small; kept for every patient, keyed by its files).

    With a prediction store they are read from it (counted from the stored outputs, and stored, the first time).
    """
    rows = patient_rows(data_dir, patient_id)
    return _patient_stats(data_dir, patient_id, models_key, patient_files_key(rows), _store_key(), rows)


# A few KB per patient; bounded because each rewrite of a patient's files adds an entry (the old one is unreachable).
@st.cache_data(show_spinner=False, max_entries=2048)
def _patient_stats(data_dir: str, patient_id: str, models_key: str, files_key: str, store_key: str,
                   _rows: pd.DataFrame) -> pd.DataFrame:
    store = prediction_store()
    if store is not None:
        from brainseg.evaluation.stored_stats import stored_slice_stats

        return stored_slice_stats(store, live_cascade(), _rows)
    prediction = get_patient_prediction(data_dir, patient_id, models_key)
    rows = prediction["rows"]
    return slice_stats(patient_id, str(rows["institution"].iloc[0]), rows["slice"].to_numpy(),
                       patient_result(prediction), prediction["truth"])


def get_patient_tta(data_dir: str, patient_id: str, models_key: str) -> dict:
    """TTA uncertainty for one patient (float16 maps to keep the cache small), keyed by its files."""
    return _patient_tta(data_dir, patient_id, models_key, patient_files_key(patient_rows(data_dir, patient_id)))


@st.cache_data(show_spinner="Test-time augmentation (6 views per slice)…", max_entries=8)
def _patient_tta(data_dir: str, patient_id: str, models_key: str, files_key: str) -> dict:
    from brainseg.review.uncertainty import tta_segment

    prediction = get_patient_prediction(data_dir, patient_id, models_key)
    tta = tta_segment(live_cascade().segmenter, prediction["images"],
                      slice_numbers=prediction["rows"]["slice"].to_numpy())
    return {"std": tta.std.astype(np.float16), "score": tta.score, "n_views": tta.n_views}


def get_grad_cam(data_dir: str, patient_id: str, slice_index: int, models_key: str) -> np.ndarray:
    """Grad-CAM of one slice, keyed by the patient's files."""
    files_key = patient_files_key(patient_rows(data_dir, patient_id))
    return _grad_cam(data_dir, patient_id, slice_index, models_key, files_key)


@st.cache_data(show_spinner="Grad-CAM…", max_entries=64)
def _grad_cam(data_dir: str, patient_id: str, slice_index: int, models_key: str, files_key: str) -> np.ndarray:
    from brainseg.review.saliency import grad_cam

    prediction = get_patient_prediction(data_dir, patient_id, models_key)
    images = prediction["images"][slice_index : slice_index + 1]
    return grad_cam(live_cascade().classifier, images)[0]


@st.cache_resource(show_spinner=False)
def _open_review_log(location: str):
    from brainseg.review.review_log import ReviewLog

    return ReviewLog(location)


def review_log():
    """The review store at $BRAINSEG_REVIEW_DB (a SQLite file or a SQLAlchemy URL; default: the user's data
    folder), opened once per process; raises BrainsegError (ReviewStoreError) when it cannot be opened."""
    return _open_review_log(settings.review_db())


def require_review_log():
    """The review store, or None after showing why it cannot be opened (a message, never a traceback)."""
    try:
        return review_log()
    except BrainsegError as err:
        st.error(f"The review store is unavailable: {err}")
        return None


def reviewer() -> str:
    """Who is reviewing in this session (see brainseg.app.identity)."""
    from brainseg.app.identity import current_reviewer

    return current_reviewer()


CHOSEN_PATIENT = "_chosen_patient"  # the Patients page's patient (not a widget key: it survives page switches)


def open_in_patients(patient_id: str, slice_index: int) -> None:
    """Callback: show ``patient_id`` at ``slice_index`` on the Patients page."""
    st.session_state[CHOSEN_PATIENT] = patient_id
    st.session_state["_slice_patient"] = patient_id
    st.session_state["slice_index"] = int(slice_index)
    st.session_state["_go_to_patients"] = True


def models_key() -> str:
    path = str(models_dir())
    point = operating_point_digest(path)  # read once: it keys both the cascade and the results
    cascade = get_cascade(path, point)
    return f"{cascade.classifier.sha256[:16]}-{cascade.segmenter.sha256[:16]}-{point}"


THRESHOLD_DECIMALS = STORED_DECIMALS  # operating_point.json's 6 decimals (0.020058): the session holds it exactly
SLIDER_STEP = 0.001  # the sliders' drag step; the number box beside the page's slider takes the finer values


def _init_threshold() -> None:
    if "threshold" not in st.session_state:
        # The shipped default itself (the CLI's, the Study summary's and the Model card's), never rounded up.
        st.session_state["threshold"] = floor_to_step(default_threshold())


def _init_data_dir() -> None:
    """Raises SettingsError when there is no data folder to open (pages that need none still work)."""
    if "data_dir" not in st.session_state:
        st.session_state["data_dir"] = str(settings.default_data_dir().resolve())


def default_threshold() -> float:
    try:
        return float(read_operating_point(models_dir()).get("threshold", DEFAULT_THRESHOLD))
    except BrainsegError:
        return DEFAULT_THRESHOLD


def default_origin_words(point: dict) -> str:
    """Where a models folder's default threshold was chosen, from its operating point's own record."""
    if not point.get("chosen_on"):
        return "This models folder's operating point does not record where its default was chosen."
    return f"The default was chosen {chosen_on_words(point['chosen_on'])}."


def default_origin() -> str:
    """``default_origin_words`` for the live models folder."""
    try:
        return default_origin_words(read_operating_point(models_dir()))
    except BrainsegError:
        return default_origin_words({})


def floor_to_step(value: float) -> float:
    """A threshold rounded down to the stored decimals (``floor_decimals``, the operating point's own rule): a
    lower threshold never loses sensitivity, and 0.020058 stays 0.020058."""
    return floor_decimals(float(value), THRESHOLD_DECIMALS)


def set_threshold(value: float) -> None:
    st.session_state["threshold"] = min(1.0, max(0.0, floor_to_step(value)))


def threshold() -> float:
    _init_threshold()
    return float(st.session_state["threshold"])


def format_score(score: float, threshold: float) -> str:
    """A slice score written so that it reads on the same side of ``threshold`` as the gate puts it.

    3 decimals showed 0.0197 as "0.020" beside a 0.020 threshold and "below the gate". Here the score gets 3
    decimals, and more until it and the threshold, written to as many, compare as their exact values do (in
    float64, as ``passes_gate`` compares): 0.0197 at 0.020058, 0.0200581 at 0.020058, 0.69999999 at 0.7."""
    score, threshold = float(score), float(threshold)
    start = threshold_decimals(threshold) if score == threshold else 3  # equal: show the threshold in full
    for decimals in range(start, 13):
        shown, bar = float(f"{score:.{decimals}f}"), float(f"{threshold:.{decimals}f}")
        if (shown > bar, shown < bar) == (score > threshold, score < threshold):
            return f"{score:.{decimals}f}"
    return repr(score)


def data_dir() -> str:
    _init_data_dir()
    return str(st.session_state["data_dir"])


def threshold_control(container, key: str, label: str = "Slice score threshold") -> None:
    """A slider bound to the session's one threshold (any number of pages may show one).

    It moves in 0.001 steps; its label shows the applied value with as many decimals as it has, so the shipped
    0.020058 does not read as 0.020 (``threshold_entry`` types such a value)."""
    value = threshold()
    st.session_state[key] = value
    container.slider(label, 0.0, 1.0, step=SLIDER_STEP, format=f"%.{threshold_decimals(value)}f", key=key,
                     on_change=lambda: set_threshold(st.session_state[key]),
                     help="Slices whose slice score is at least this keep the segmenter's mask (see the Model card "
                          "for what the score combines).")


def threshold_entry(container, key: str, label: str = "Exact threshold") -> None:
    """A number box bound to the session's threshold, to 6 decimals: the operating point sits at 2% of a 0..1
    slider's track, too close to its end to be placed there precisely."""
    st.session_state[key] = threshold()
    container.number_input(label, 0.0, 1.0, step=SLIDER_STEP, format=f"%.{THRESHOLD_DECIMALS}f", key=key,
                           on_change=lambda: set_threshold(st.session_state[key]),
                           help="Type any threshold (rounded down to 6 decimals); ± moves it by 0.001.")


# st.dataframe writes floats to 4 significant digits: the threshold 0.020058 showed as 0.0201, above the one applied.
THRESHOLD_COLUMN = {"threshold": st.column_config.NumberColumn("threshold", format=f"%.{THRESHOLD_DECIMALS}f")}

_THRESHOLD_SLOT = "_sidebar_threshold_slot"


def sidebar_threshold() -> None:
    """The sidebar's threshold slider, in its usual place, drawn from inside a page's ``st.fragment``: a threshold
    change (here, a preset or the page's slider) then reruns only that fragment and the sidebar still follows it."""
    threshold_control(st.session_state[_THRESHOLD_SLOT], "_threshold_sidebar")


def _apply_data_dir() -> None:
    st.session_state["data_dir"] = st.session_state["_data_dir_choice"]


def through_the_router() -> None:
    """Rerun this page through app.py if Streamlit ran its file directly.

    Streamlit serves the files of a ``pages/`` folder as pages by themselves (its first multipage design) until
    some session's script has called ``st.navigation``. So the first session of a fresh server, opened at a
    page's address (a bookmark, a shared link), runs that page without app.py: no page configuration, and a
    navigation of file names ("app", "model card", ...) that stays for the session. Switching the process to
    ``st.navigation`` and rerunning sends the same address through app.py's router. Only a session's first run
    is rerun: it carries no widget action that a rerun would drop (Streamlit's AppTest takes the pages/ folder
    path on every run after the first; there the switch alone is enough).
    """
    from streamlit.runtime.pages_manager import PagesManager

    first_run = "_has_run" not in st.session_state
    st.session_state["_has_run"] = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if first_run:
            st.rerun()


def sidebar(draw_threshold: bool = True) -> None:
    """Shown on every page: the research notice, the data folder, the threshold and the models.

    ``draw_threshold=False`` leaves the threshold's place empty for the page's fragment (``sidebar_threshold``).
    """
    through_the_router()  # every page starts with this sidebar
    side = st.sidebar
    side.warning(RESEARCH_NOTICE)
    slot = side.container()
    if draw_threshold:
        threshold_control(slot, "_threshold_sidebar")
    else:
        st.session_state[_THRESHOLD_SLOT] = slot
    try:
        current = data_dir()
    except BrainsegError as err:  # Upload, Study and Model card need no data folder: say it here, go on
        side.error(f"No data folder: {err}")
    else:
        # Only folders under the configured roots are offered: a visitor never types a server path.
        choices = list(data_folder_choices(tuple(str(root) for root in settings.data_roots())))
        if current not in choices:
            choices.insert(0, current)
        st.session_state["_data_dir_choice"] = current
        side.selectbox("Data folder (Kaggle kaggle_3m layout)", choices, key="_data_dir_choice",
                       on_change=_apply_data_dir, format_func=_folder_label,
                       help=f"Folders under ${settings.DATA_ROOTS_ENV} (default: the demo cases and "
                            f"${settings.DATA_DIR_ENV}).")
    models_selector(side)
    from brainseg.app.identity import reviewer_sidebar

    reviewer_sidebar(side)


def _apply_models_choice() -> None:
    st.session_state[MODELS_CHOICE_KEY] = st.session_state["_models_choice"]
    # Another folder's threshold belongs to its own models and slice score: start from its default.
    set_threshold(default_threshold())
    st.toast(f"Models from {Path(st.session_state[MODELS_CHOICE_KEY]).name}: threshold set to its default "
             f"{format_threshold(threshold())}")


def models_selector(container) -> None:
    """A selectbox over the model folders (``settings.model_folder_choices``), shown when there are several."""
    folders = [str(p) for p in settings.model_folder_choices()]
    if len(folders) < 2:
        return
    try:
        live = str(Path(models_dir()).resolve())
    except BrainsegError:
        return
    if live not in folders:
        folders.insert(0, live)
    st.session_state["_models_choice"] = live
    container.selectbox("Models folder", folders, key="_models_choice", on_change=_apply_models_choice,
                        format_func=lambda p: Path(p).name,
                        help=f"${settings.MODELS_DIR_ENV} (or models/), and the folders beside it or inside it "
                             "holding classifier.keras and segmenter.keras, e.g. a `brainseg finetune` output. "
                             "The Model card page says where the live one came from.")


@st.cache_data(show_spinner=False, ttl=30)
def data_folder_choices(roots: tuple[str, ...]) -> list[str]:
    """The Kaggle-layout folders under ``roots``; listed at most every 30 s, not on every rerun
    (a threshold move reruns the sidebar, and the listing walks the roots' folders)."""
    return [str(p) for p in settings.data_folder_choices([Path(r) for r in roots])]


def _folder_label(path: str) -> str:
    return "demo cases (shipped)" if path == str(settings.DEMO_DATA_DIR.resolve()) else path


def page_setup(title: str, needs_models: bool = True,
               threshold_in_fragment: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, Cascade | None]:
    """A page's common start: title, sidebar, the dataset and the models; stops the page with a message
    if either cannot be loaded. ``threshold_in_fragment``: the page draws the sidebar's threshold slider
    inside its ``st.fragment`` (``sidebar_threshold``), so that moving it reruns only that fragment."""
    st.title(title)
    sidebar(draw_threshold=not threshold_in_fragment)
    dataset = require_dataset()
    cascade = require_cascade() if needs_models else None
    if dataset is None or (needs_models and cascade is None):
        st.stop()
    return dataset[0], dataset[1], cascade


def collect_stats(patient_ids: list[str]) -> pd.DataFrame:
    """Per-slice counts for several patients, with a progress bar (cached per patient)."""
    progress = st.progress(0.0, text="Running the cascade…" if prediction_store() is None else
                           "Reading the prediction store…")
    frames = []
    for k, patient_id in enumerate(patient_ids, start=1):
        frames.append(get_patient_stats(data_dir(), patient_id, models_key()))
        progress.progress(k / len(patient_ids), text=f"Patients processed: {k} / {len(patient_ids)}")
    progress.empty()
    return pd.concat(frames, ignore_index=True)


def require_dataset() -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The current folder's manifest and patients, or None after showing why it cannot be read."""
    try:
        return get_dataset(str(settings.allowed_data_dir(data_dir())))
    except BrainsegError as err:
        st.error(f"Cannot read the data folder: {err}")
        return None


def require_cascade() -> Cascade | None:
    try:
        return live_cascade()
    except BrainsegError as err:  # includes a missing models folder (settings.SettingsError)
        st.error(f"Cannot load the models: {err}")
        return None


def trained_parts(cascade: Cascade) -> list[str]:
    """The split parts either live model trained on, in split order (a final fit: train and val)."""
    parts = {part for model in (cascade.classifier, cascade.segmenter)
             for part in trained_on(model.metadata.get("train_config", {}))}
    return [part for part in PARTS if part in parts]


def out_of_fold_report() -> tuple[str, dict] | None:
    """The cross-validation report the Model card page plots, and its name: the one the live operating point was
    chosen on (``brainseg final-fit --choices-only --crossval``), so the plots show the shipped slice score and
    threshold, else ``crossval.json``; None when the models folder has neither."""
    from brainseg.reports.model_card import point_crossval_path

    folder = models_dir()
    path = point_crossval_path(folder) or folder / "crossval.json"
    if not path.is_file():
        return None
    name = str(path.relative_to(folder.parent)) if path.is_relative_to(folder.parent) else str(path)
    return name, _read_report(str(path), path.stat().st_mtime_ns)


@st.cache_data(show_spinner=False, max_entries=4)
def _read_report(path: str, mtime_ns: int) -> dict:
    from brainseg.reports.model_card import crossval_without_slice_rows

    return crossval_without_slice_rows(Path(path))


def training_command(cascade: Cascade | None) -> str:
    """The command that trained the live models, from their sidecars (a final fit trained on train + val)."""
    if cascade is None:
        return "brainseg train"
    final = all(is_final_fit(m.metadata.get("train_config", {})) for m in (cascade.classifier, cascade.segmenter))
    return "brainseg final-fit" if final else "brainseg train"
