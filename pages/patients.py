"""Patients: browse a patient slice by slice with ground truth and prediction overlays."""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from brainseg.app import dashboard as dash
from brainseg.app.correction import CorrectionContext, correction_panel, correction_section, corrections_zip
from brainseg.app.navigation import SliceNavigator, remember
from brainseg.core import metrics
from brainseg.errors import BrainsegError
from brainseg.evaluation.patient_summary import decision_note, summarize_patient
from brainseg.inference.cascade import describe_slice_score
from brainseg.inference.results import slice_results
from brainseg.reports.export import case_report_html, masks_to_multipage_tiff, masks_to_nifti, masks_to_png_zip
from brainseg.reports.figures import burden_strip, volume_figure
from brainseg.reports.overlays import (
    CHANNEL_VIEWS,
    DIFFERENCE_COLORS,
    PREDICTION_COLOR,
    TRUTH_COLOR,
    channel_view,
    difference_view,
    heatmap_overlay,
    legend_html,
    overlay,
)
from brainseg.review.corrections import cohort_rows

manifest, patients, cascade = dash.page_setup("Patients")
threshold = dash.threshold()

labels = {
    row.patient_id: f"{row.patient_id} · {row.institution} · {row.n_slices} slices · {row.n_tumor_slices} with tumor"
    for row in patients.itertuples()
}
# Streamlit forgets a widget's value when the user leaves its page: the patient is kept in a key of our own.
if "patient_id" not in st.session_state and st.session_state.get(dash.CHOSEN_PATIENT) in labels:
    st.session_state["patient_id"] = st.session_state[dash.CHOSEN_PATIENT]
patient_id = st.selectbox("Patient (type to search)", list(labels), format_func=labels.get, key="patient_id")
st.session_state[dash.CHOSEN_PATIENT] = patient_id
with st.expander("Patient record (data.csv)"):
    st.dataframe(patients[patients["patient_id"] == patient_id].T.astype(str), width="stretch")

with st.spinner("Running the cascade on this patient…"):
    prediction = dash.get_patient_prediction(dash.data_dir(), patient_id, dash.models_key())
result = dash.patient_result(prediction)
slices = prediction["rows"]["slice"].to_numpy()
truth, images = prediction["truth"], prediction["images"]
masks = result.masks(threshold)
n = len(slices)

# Slice navigation: one canonical index, changed by the slider, the buttons or a click on the strip.
navigator = SliceNavigator(slices)
if st.session_state.get("_slice_patient") != patient_id:
    st.session_state["_slice_patient"] = patient_id
    st.session_state["slice_index"] = navigator.start(truth.any(axis=(1, 2)))
st.session_state["slice_index"] = navigator.clamp(int(st.session_state["slice_index"]))


def _step(delta: int) -> None:
    st.session_state["slice_index"] = navigator.step(st.session_state["slice_index"], delta)


def _from_slider() -> None:
    st.session_state["slice_index"] = navigator.index_of(st.session_state["_slice_slider"])


def _from_strip() -> None:
    points = st.session_state["_burden_strip"].selection.get("points", [])
    if points:
        st.session_state["slice_index"] = navigator.index_of(points[0]["x"])


nav_prev, nav_slider, nav_next = st.columns([1, 12, 1], vertical_alignment="bottom")
nav_prev.button("◀", on_click=_step, args=(-1,), help="previous slice", disabled=st.session_state["slice_index"] == 0)
nav_next.button("▶", on_click=_step, args=(1,), help="next slice", disabled=st.session_state["slice_index"] == n - 1)
st.session_state["_slice_slider"] = int(slices[st.session_state["slice_index"]])
# A one-slice case still gets a (disabled) slider: Streamlit refuses one whose ends are equal.
nav_slider.slider("Slice", int(slices.min()), max(int(slices.max()), int(slices.min()) + 1), key="_slice_slider",
                  on_change=_from_slider, disabled=n == 1)
i = st.session_state["slice_index"]
st.caption(f"Showing {patient_id} slice {slices[i]} ({i + 1} of {n})")

probability = float(result.probabilities[i])
decisions = result.decisions(threshold)
called = bool(decisions[i])
gate_note = decision_note(probability, threshold, called)
cols = st.columns(5)
# The score gets the decimals that keep it on its side of the threshold (0.0197 is not "0.020" at 0.020).
cols[0].metric("Slice score", dash.format_score(probability, threshold),
               f"classifier P {result.classifier_probabilities[i]:.3f}",
               delta_color="off", delta_arrow="off",
               help=f"What the threshold gates: {describe_slice_score(result.slice_score)}")
cols[1].metric(f"Decision at {dash.format_threshold(threshold)}", "tumor" if called else "no tumor", gate_note,
               delta_color="off", delta_arrow="off",
               help="A slice over the threshold whose predicted mask is empty is reported as no tumor.")
cols[2].metric("Ground-truth area", f"{int(truth[i].sum())} px")
cols[3].metric("Predicted area", f"{int(masks[i].sum())} px")
cols[4].metric("Slice Dice", f"{metrics.dice(masks[i], truth[i]):.3f}",
               help="1.0 when both masks are empty (nothing to find, nothing drawn)")

# The display settings are remembered: a trip to the Error browser and back keeps them.
controls = st.columns([2, 2, 2, 3])
view = controls[0].selectbox("MRI view", list(CHANNEL_VIEWS), **remember("mri_view", next(iter(CHANNEL_VIEWS))))
style = controls[1].radio("Masks as", ["filled", "contour"], horizontal=True, **remember("mask_style", "filled"))
opacity = controls[2].slider("Opacity", 0.0, 1.0, step=0.05, **remember("mask_opacity", 0.45))
with controls[3]:
    show_truth = st.toggle("Ground truth (red)", **remember("show_truth", True))
    show_prediction = st.toggle("Prediction (green)", **remember("show_prediction", True))

base = channel_view(images[i], view)
shown_truth = truth[i] if show_truth else None
shown_prediction = masks[i] if show_prediction else None
left, middle, right = st.columns(3)
left.image(overlay(base, shown_truth, None, opacity, style), caption="Ground truth", width="stretch")
middle.image(overlay(base, None, shown_prediction, opacity, style), caption="Prediction", width="stretch")
right.image(overlay(base, shown_truth, shown_prediction, opacity, style), caption="Superimposed", width="stretch")
st.markdown(legend_html({"ground truth": TRUTH_COLOR, "prediction": PREDICTION_COLOR}), unsafe_allow_html=True)

with st.expander("Difference view", expanded=True):
    diff_col, raw_col = st.columns(2)
    diff_col.image(difference_view(base, masks[i], truth[i], max(opacity, 0.5), style),
                   caption="Difference: prediction vs ground truth", width="stretch")
    raw_col.image(base, caption=f"{view}, no overlay", width="stretch")
    st.markdown(legend_html(DIFFERENCE_COLORS), unsafe_allow_html=True)

st.subheader("Tumor burden across the patient")
st.caption("Click a slice in the strip to jump there.")
figure = burden_strip(slices, truth.sum(axis=(1, 2)), masks.sum(axis=(1, 2)), result.probabilities, threshold,
                      int(slices[i]))
st.plotly_chart(figure, key="_burden_strip", on_select=_from_strip, selection_mode="points", width="stretch")

st.subheader("This patient at this threshold")
summary = summarize_patient(slices, result, truth, threshold)
cols = st.columns(4)
cols[0].metric("Dice per volume", f"{summary.dice_per_volume:.3f}")
cols[1].metric("Tumor slices detected", f"{summary.detected_slices} / {summary.tumor_slices}")
cols[2].metric("Tumor slices missed", summary.missed)
cols[3].metric("False-positive slices", summary.false_positives)
st.dataframe(pd.DataFrame({"missed tumor slices": [", ".join(map(str, summary.missed_slices)) or "none"],
                           "false-positive slices": [", ".join(map(str, summary.false_positive_slices)) or "none"]}),
             hide_index=True, width="stretch")

st.subheader("Review tools")
tools = st.columns(2)
show_uncertainty = tools[0].toggle("Uncertainty overlay (test-time augmentation)",
                                   help="Per-pixel spread of the segmenter over 6 views: as is, mirrored, shifted.",
                                   **remember("show_uncertainty", False))
show_cam = tools[1].toggle("Grad-CAM overlay (classifier saliency)",
                           help="Where the classifier (one input of the slice score) looked; not a segmentation.",
                           **remember("show_grad_cam", False))
if show_uncertainty or show_cam:
    panels = st.columns(2)
    if show_uncertainty:
        tta = dash.get_patient_tta(dash.data_dir(), patient_id, dash.models_key())
        std = tta["std"][i].astype(np.float32)
        panels[0].image(heatmap_overlay(base, std, 0.85, "inferno", scale=0.5), width="stretch",
                        caption=f"Uncertainty (std over {tta['n_views']} views; bright = 0.5) — uncertainty score "
                                f"{tta['score'][i]:.3f} (mean std where any view draws)")
    if show_cam:
        cam = dash.get_grad_cam(dash.data_dir(), patient_id, i, dash.models_key())
        panels[1].image(heatmap_overlay(base, cam, 0.6, "turbo", scale=1.0), width="stretch",
                        caption="Grad-CAM of P(tumor) (red = most influential)")

with st.expander("3-D view: ground truth and prediction over the slices"):
    if st.toggle("Build the 3-D view", **remember("show_3d", False)):
        st.plotly_chart(volume_figure(images, truth, masks), width="stretch", key="volume_3d")
        st.caption("Surfaces from the stacked masks (in-plane subsampled 2x). Slice spacing is not in the data: "
                   "slices are drawn 4 pixel-widths apart.")

with st.expander("Export this patient"):
    # Each file is built only when its button is clicked (callables), never on an ordinary rerun.
    names = [f"{prediction['rows']['case'].iloc[0]}_{s}" for s in slices]
    files = [f"{name}.tif" for name in names]
    cascade_hashes = {m.role: m.sha256 for m in (cascade.classifier, cascade.segmenter)}
    institution = str(prediction["rows"]["institution"].iloc[0])
    cols = st.columns(5)
    cols[0].download_button("Masks, multi-page TIFF", lambda: masks_to_multipage_tiff(masks),
                            f"{patient_id}_masks.tif", "image/tiff", key="export_tiff")
    cols[1].download_button("Masks, NIfTI", lambda: masks_to_nifti(masks), f"{patient_id}_masks.nii",
                            "application/octet-stream", key="export_nifti")
    cols[2].download_button("Masks, PNGs (zip)", lambda: masks_to_png_zip(masks, names),
                            f"{patient_id}_masks_png.zip", "application/zip", key="export_png")
    cols[3].download_button("Per-slice CSV", lambda: slice_results(files, result, threshold, truth).to_csv(index=False),
                            f"{patient_id}_slices.csv", "text/csv", key="export_csv")
    cols[4].download_button("Case report (HTML, printable)",
                            lambda: case_report_html(patient_id, files, slices, images, result, truth, threshold,
                                                     cascade_hashes, institution),
                            f"{patient_id}_report.html", "text/html", key="export_report")
    st.caption(f"At threshold {dash.format_threshold(threshold)}. Open the report in a browser and print it to PDF.")

with correction_section("correction_mode",
                        "Brush, eraser, fill, undo and clear over the cascade's mask at the current threshold; each "
                        "save is a new version in the review store. The expert mask is never changed.") as log:
    if log is not None:
        context = CorrectionContext(
            patient_id=patient_id, case_name=str(prediction["rows"]["case"].iloc[i]), slice_number=int(slices[i]),
            slice_file=Path(prediction["rows"]["image_path"].iloc[i]).name, threshold=threshold,
            classifier_sha256=cascade.classifier.sha256, segmenter_sha256=cascade.segmenter.sha256)
        correction_panel(base, masks[i], truth[i], context, log, dash.reviewer())

with st.expander("Review log: verdicts and corrections, who did what", expanded=False):
    log = dash.require_review_log()
    if log is not None:
        reviewer = dash.reviewer()
        form = st.form("review_form", clear_on_submit=True)
        verdict = form.radio("Verdict on the prediction", ["agree", "disagree", "unsure"], horizontal=True,
                             key="review_verdict")
        comment = form.text_input("Comment", key="review_comment")
        if form.form_submit_button("Save verdict"):
            if not reviewer:
                st.warning("Enter your reviewer name in the sidebar (or log in) first: every verdict records who "
                           "made it.")
            else:
                try:
                    log.add(patient_id, int(slices[i]), verdict, threshold, dash.models_key(), comment, reviewer)
                    st.success(f"Saved: {verdict} on {patient_id} slice {slices[i]} by {reviewer}")
                except BrainsegError as err:
                    st.error(f"Not saved: {err}")
        try:
            # The filters outlive a page switch; a kept reviewer the store no longer lists falls back to everyone.
            filters = st.columns(2)
            reviewers = ["everyone", *log.reviewers()]
            who = filters[0].selectbox("Reviewer", reviewers, **remember(
                "review_filter_reviewer", "everyone", lambda kept: kept if kept in reviewers else "everyone"))
            scope = filters[1].radio("Patients", ["this patient", "all"], horizontal=True,
                                     **remember("review_filter_scope", "this patient"))
            who_filter = None if who == "everyone" else who
            patient_filter = patient_id if scope == "this patient" else None
            st.markdown("**Verdicts**")
            st.dataframe(log.entries(patient_filter, who_filter), hide_index=True, width="stretch",
                         column_config=dash.THRESHOLD_COLUMN)
            st.markdown("**Corrections** (every version is kept)")
            st.dataframe(log.corrections(patient_filter, who_filter), hide_index=True, width="stretch",
                         column_config=dash.THRESHOLD_COLUMN)
            cols = st.columns(2)
            cols[0].download_button("Export these verdicts (CSV)", lambda: log.to_csv(patient_filter, who_filter),
                                    "review_log.csv", "text/csv", key="export_review_log")
            cols[1].download_button("Export latest corrections, every reviewer (Kaggle layout + NIfTI, zip)",
                                    lambda: corrections_zip(log, dash.data_dir(), patient_filter),
                                    "corrections.zip", "application/zip", key="export_corrections",
                                    disabled=cohort_rows(log.corrections(patient_filter)).empty)
        except BrainsegError as err:
            st.error(f"Cannot read the review store: {err}")
        st.caption(f"Stored in `{log.location}` (set $BRAINSEG_REVIEW_DB to a file or a PostgreSQL URL to move it).")
