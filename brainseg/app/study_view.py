"""The Study page's glue: uploaded NIfTI files / zipped DICOM folders -> a study prediction, and its slice viewer.

Uploads are written under fixed names (``flair.nii.gz``, ``pre/00000.dcm``...) in a temporary folder that is
removed once the volumes are in memory: the visitor's file names (which often hold a patient's name) are never
used as paths, logged or shown back. One study per session is kept in ``st.session_state`` (``held_uploads``), keyed by
the uploads' hash and the models, so a threshold move only re-gates it and leaving the page loses nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from brainseg.app import dashboard as dash
from brainseg.app import held_uploads
from brainseg.app.correction import CorrectionContext, correction_panel
from brainseg.app.navigation import SliceNavigator, remember
from brainseg.errors import BrainsegError
from brainseg.inference.cascade import Cascade
from brainseg.reports.overlays import CHANNEL_VIEWS, channel_view, overlay
from brainseg.review.corrections import STUDY_PREFIX, latest_masks
from brainseg.review.review_log import ReviewLog
from brainseg.studies.archive import extract_dicom_zip
from brainseg.studies.geometry import StudyError
from brainseg.studies.study import StudyPrediction, load_study, predict_study
from brainseg.studies.volumes import NIFTI_SUFFIXES

ROLES = {"flair": "FLAIR (required)", "pre": "pre-contrast (optional)", "post": "post-contrast (optional)"}
HELD = "_held_study"  # the session's last study files and prediction (brainseg.app.held_uploads)
INDEX_KEY = "study_slice_index"


def _materialize(role: str, name: str, data: bytes, folder: Path) -> Path:
    """One upload on disk under a fixed name: a NIfTI file, or a zip of a DICOM folder unpacked safely."""
    lowered = name.lower()
    if lowered.endswith(".zip"):
        return extract_dicom_zip(data, folder / role, name)
    for suffix in NIFTI_SUFFIXES[::-1]:  # .nii.gz before .nii
        if lowered.endswith(suffix):
            path = folder / f"{role}{suffix}"
            path.write_bytes(data)
            return path
    raise StudyError(f"{name}: expected a NIfTI file (.nii, .nii.gz) or a zip of a DICOM series folder")


def load_uploaded_study(cascade: Cascade, uploads: dict[str, tuple[str, bytes]]) -> StudyPrediction:
    """Read the uploads (``role -> (name, bytes)``, FLAIR required) and run the cascade on the study."""
    with tempfile.TemporaryDirectory(prefix="brainseg_study_") as tmp:
        try:
            paths = {role: _materialize(role, name, data, Path(tmp)) for role, (name, data) in uploads.items()}
            study = load_study(paths["flair"], paths.get("pre"), paths.get("post"))
        except StudyError as err:  # name the upload by its role, not by the temporary folder
            raise StudyError(str(err).replace(f"{tmp}/", "uploaded ")) from err
    study.flair.path = Path(f"uploaded {study.flair.kind} FLAIR")  # the temporary path is gone
    return predict_study(cascade, study)


def study_prediction(cascade: Cascade, uploads: dict[str, tuple[str, bytes]], models_key: str) -> StudyPrediction:
    """The session's study prediction for these uploads, computed once per upload set and models."""
    key = held_uploads.digest([(f"{role}:{name}", data) for role, (name, data) in sorted(uploads.items())], models_key)

    def predict(files: dict[str, tuple[str, bytes]]) -> StudyPrediction:
        st.session_state[INDEX_KEY] = None  # a new study opens on its own start slice
        return load_uploaded_study(cascade, files)

    return held_uploads.hold(HELD, uploads, key, predict).value


def slice_viewer(prediction: StudyPrediction, threshold: float) -> int:
    """Slice navigation (slider, buttons), view and overlay controls, and the overlaid slice; returns the index."""
    study, result = prediction.study, prediction.result
    masks = result.masks(threshold)
    navigator = SliceNavigator(np.arange(1, len(study) + 1))
    if st.session_state.get(INDEX_KEY) is None:
        st.session_state[INDEX_KEY] = navigator.start(masks.any(axis=(1, 2)))
    st.session_state[INDEX_KEY] = navigator.clamp(int(st.session_state[INDEX_KEY]))

    def _step(delta: int) -> None:
        st.session_state[INDEX_KEY] = navigator.step(st.session_state[INDEX_KEY], delta)

    def _from_slider() -> None:
        st.session_state[INDEX_KEY] = navigator.index_of(st.session_state["_study_slider"])

    n = len(study)
    prev, slider, nxt = st.columns([1, 12, 1], vertical_alignment="bottom")
    prev.button("◀", on_click=_step, args=(-1,), key="study_prev", disabled=st.session_state[INDEX_KEY] == 0)
    nxt.button("▶", on_click=_step, args=(1,), key="study_next", disabled=st.session_state[INDEX_KEY] == n - 1)
    st.session_state["_study_slider"] = int(st.session_state[INDEX_KEY]) + 1
    slider.slider("Slice (inferior → superior)", 1, max(n, 2), key="_study_slider", on_change=_from_slider,
                  disabled=n == 1)
    i = int(st.session_state[INDEX_KEY])

    # The view settings outlive a visit to another page, as the held study does.
    controls = st.columns([2, 2, 2])
    view = controls[0].selectbox("MRI view", list(CHANNEL_VIEWS), **remember("study_view", next(iter(CHANNEL_VIEWS))))
    style = controls[1].radio("Mask as", ["filled", "contour"], horizontal=True, **remember("study_style", "filled"))
    opacity = controls[2].slider("Opacity", 0.0, 1.0, step=0.05, **remember("study_opacity", 0.45))
    called = bool(result.decisions(threshold)[i])
    cols = st.columns(3)
    cols[0].metric("Slice score", dash.format_score(result.probabilities[i], threshold))  # on its side of the gate
    cols[1].metric(f"Decision at {dash.format_threshold(threshold)}", "tumor" if called else "no tumor")
    cols[2].metric("Predicted area (model grid)", f"{int(masks[i].sum())} px")
    base = channel_view(study.images[i], view)
    left, right = st.columns(2)
    left.image(overlay(base, None, masks[i], opacity, style), width="stretch",
               caption=f"Slice {i + 1} of {n}: prediction (green), as the models saw it (256×256, axial, "
                       "radiological: patient's right on the left)")
    right.image(base, caption=f"{view}, no overlay", width="stretch")
    return i


def study_key(uploads: dict[str, tuple[str, bytes]]) -> str:
    """The study's name in the review store: a digest of its FLAIR file (never a patient name or DICOM identifier),
    so reopening the same file finds its corrections again."""
    return STUDY_PREFIX + hashlib.sha256(uploads["flair"][1]).hexdigest()[:16]


def study_correction(prediction: StudyPrediction, index: int, threshold: float, cascade: Cascade, log: ReviewLog,
                     reviewer: str, key: str) -> None:
    """Correction mode on slice ``index`` of the study (as the models saw it: axial, 256x256); saved versions go to
    the review store under the study's key, slice number ``index + 1``."""
    context = CorrectionContext(patient_id=key, case_name=key, slice_number=index + 1,
                                slice_file=f"slice_{index + 1:03d}", threshold=threshold,
                                classifier_sha256=cascade.classifier.sha256, segmenter_sha256=cascade.segmenter.sha256)
    view = st.session_state.get("study_view") or next(iter(CHANNEL_VIEWS))
    correction_panel(channel_view(prediction.study.images[index], view), prediction.result.masks(threshold)[index],
                     None, context, log, reviewer)


def saved_study_corrections(key: str) -> dict[int, np.ndarray]:
    """This study's latest saved corrections; none when the review store cannot be opened (correction mode then
    says why; a reader who only views the study is not bothered with it)."""
    try:
        return study_corrections(dash.review_log(), key)
    except BrainsegError:
        return {}


def study_corrections(log: ReviewLog, key: str) -> dict[int, np.ndarray]:
    """Slice index -> the latest corrected mask of this study."""
    return {number - 1: mask for number, mask in latest_masks(log, key).items()}
