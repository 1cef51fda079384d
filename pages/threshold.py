"""Threshold & metrics: tune the gate and watch slice-, patient- and pixel-level figures change live.

Everything that depends on the threshold (presets, sliders, the table, ROC / PR with the operating point,
confusion matrices) is one ``st.fragment``: moving the threshold re-gates the stored per-slice counts and
redraws that fragment only; the patients' outputs, the reliability diagram and the page around stay as drawn.
"""

import pandas as pd
import streamlit as st

from brainseg.app import dashboard as dash
from brainseg.app.navigation import remember
from brainseg.core.metrics import expected_calibration_error
from brainseg.core.split import PARTS, load_split
from brainseg.errors import BrainsegError
from brainseg.evaluation.calibration import apply_temperature, fitted_on_words, load_calibration
from brainseg.evaluation.threshold_analysis import metrics_at_threshold, preset_thresholds
from brainseg.reports.figures import (
    confusion_figure,
    dice_loss_figure,
    precision_recall_figure,
    reliability_figure,
    roc_figure,
)

manifest, patients, cascade = dash.page_setup("Threshold & metrics", threshold_in_fragment=True)

trained = dash.trained_parts(cascade)  # a final fit trained on val too: its val figures are not held out
try:
    split = load_split(dash.models_dir() / "split.json")
except (BrainsegError, OSError, ValueError) as err:
    # Without the split nobody can tell which patients trained the models: say so rather than drop the warning.
    split = None
    st.warning(f"Cannot read the split ({err}): the patients the live models trained on "
               f"({' + '.join(trained) or 'unknown'} split) cannot be told apart, so the figures below may be "
               "optimistic for some or all of them.")
present = {part: sorted(set(split[part]) & set(patients["patient_id"])) for part in PARTS} if split else {}

ALL = "all"
choices = [ALL] + [part for part, ids in present.items() if ids]


def _scope_label(part: str) -> str:
    if part == ALL:
        return "all loaded patients"
    return f"{part} split ({len(present[part])} patients{', trained on' if part in trained else ''})"


def _offered_scope(kept: str) -> str:
    """The remembered scope, or all patients with a note when this folder has none of that split."""
    if kept in choices:
        return kept
    st.info(f"No patient of the {kept} split is loaded: showing all loaded patients.")
    return ALL


# The scope is remembered across pages: falling back to "all" on return would silently mix training patients in.
scope = st.radio("Patients", choices, format_func=_scope_label, horizontal=True,
                 help=f"The live models trained on the {' + '.join(trained)} split: figures on those patients are "
                      "optimistic. Only patients the models never saw give honest figures.",
                 **remember("metrics_scope", ALL, fit=_offered_scope))
chosen = patients["patient_id"].tolist() if scope == ALL else present[scope]
seen = sorted(set(chosen) & {patient for part in trained for patient in present.get(part, [])})
test_shown = sorted(set(chosen) & set(present.get("test", [])))  # presets set on them would be chosen on test
if seen:
    st.warning(f"{len(seen)} of these {len(chosen)} patients were used to train the live models "
               f"({' + '.join(trained)} split): the figures below are optimistic for them.")

stats = dash.collect_stats(chosen)

labels = stats["truth_pixels"].to_numpy() > 0
scores = stats["probability"].to_numpy()


PRESET_HELP = {
    "seed": "The seed notebook's cut on its classifier's probability; on this slice score it is a point of comparison.",
    "sensitivity": "The highest threshold at which the gate passes at least this share of these patients' tumor "
                   "slices (the gate row below). The cascade's own slice sensitivity, which also needs a drawn mask, "
                   "can be lower.",
}


def _fmt(value) -> str:
    return "–" if value != value else f"{value:.3f}"  # NaN (no denominator) shows as a dash


@st.fragment
def operating_point(stats: pd.DataFrame, labels, scores) -> None:
    """The threshold-dependent part: a preset click or a slider move reruns only this."""
    dash.sidebar_threshold()
    st.subheader("Operating point")
    presets = preset_thresholds(stats)
    cols = st.columns(len(presets) + 1)
    # Each label shows the value the click applies (set_threshold rounds down to 1e-6), not a rounding of it.
    for col, (name, value) in zip(cols, presets.items(), strict=False):
        label = f"{name.replace('sensitivity', 'sens.')}: {dash.format_threshold(dash.floor_to_step(value))}"
        col.button(label, on_click=dash.set_threshold, args=(value,), key=f"preset_{name}", width="stretch",
                   help=PRESET_HELP["seed" if name.startswith("seed") else "sensitivity"])
    default = dash.floor_to_step(dash.default_threshold())
    cols[-1].button(f"default: {dash.format_threshold(default)}", on_click=dash.set_threshold, args=(default,),
                    key="preset_default", width="stretch", help="The shipped operating point (operating_point.json).")
    if test_shown:
        st.caption(f"The sensitivity presets are set on the patients shown, {len(test_shown)} of them from the test "
                   "split: a threshold chosen here and then judged on those patients is optimistic. "
                   + dash.default_origin())
    slider_col, entry_col = st.columns([4, 1], vertical_alignment="bottom")
    dash.threshold_control(slider_col, "_threshold_page", "Threshold (same as the sidebar's)")
    dash.threshold_entry(entry_col, "_threshold_exact")
    threshold = dash.threshold()
    report = metrics_at_threshold(stats, threshold)

    rows = []
    for level, key in (("slices: gate (slice score)", "classifier"), ("slices: cascade (gate + non-empty mask)",
                                                                     "cascade_slices"), ("patients", "patients")):
        r = report[key]
        rows.append({"level": level, "sensitivity": _fmt(r["sensitivity"]), "specificity": _fmt(r["specificity"]),
                     "precision": _fmt(r["precision"]), "F1": _fmt(r["f1"]), "TP": r["tp"], "FP": r["fp"],
                     "TN": r["tn"], "FN": r["fn"]})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption("A slice is called tumor when its score passes the gate and its mask is not empty. A patient counts "
               "as detected (patients row) when any of its slices is called; a patient without tumor with any "
               "slice called is a false positive.")

    gate = report["gate_loss"]
    m = st.columns(4)
    m[0].metric("Dice per volume (mean)", _fmt(report["dice_per_volume"]["mean"]))
    m[1].metric("Dice per volume (median)", _fmt(report["dice_per_volume"]["median"]))
    m[2].metric("Tumor slices gated out", gate["tumor_slices_gated_out"],
                help="tumor slices whose slice score is below the threshold: the segmenter never draws on them")
    m[3].metric("Tumor pixels lost to the gate", f"{gate['segmented_tumor_pixels_lost']:,}",
                f"{100 * gate['share_of_segmented_tumor_pixels_lost']:.1f}% of those found",
                delta_color="off", delta_arrow="off",
                help="true tumor pixels the segmenter had found on slices the gate discards")

    if not labels.all() and labels.any():
        left, right = st.columns(2)
        left.plotly_chart(roc_figure(labels, scores, threshold), width="stretch")
        right.plotly_chart(precision_recall_figure(labels, scores, threshold), width="stretch")
        left, right = st.columns(2)
        left.plotly_chart(confusion_figure(report["classifier"], "Slices (gate)"), width="stretch")
        right.plotly_chart(confusion_figure(report["patients"], "Patients"), width="stretch")
    losses = pd.DataFrame.from_dict(report["per_patient_dice_loss_parts"], orient="index")
    losses = losses.assign(patient_id=losses.index, cascade_dice=pd.Series(report["per_patient_dice"]))
    st.plotly_chart(dice_loss_figure(losses, where=f"at threshold {dash.format_threshold(threshold)}"), width="stretch")
    st.caption("Raising the threshold gates out whole slices: it removes their extra pixels (false-positive "
               "blobs above all) and turns their tumor into missed pixels on slices left empty.")
    with st.expander("Dice per volume by patient"):
        st.dataframe(pd.Series(report["per_patient_dice"], name="Dice per volume").round(4), width="stretch")


operating_point(stats, labels, scores)

# Calibration does not depend on the threshold: drawn with the page, not with each threshold move.
if labels.all() or not labels.any():
    st.warning("These patients' slices are all one class: ROC and precision-recall need both.")
else:
    st.subheader("Calibration")
    left, _ = st.columns(2)
    left.plotly_chart(reliability_figure(labels, scores), width="stretch")
    st.caption(f"Expected calibration error (10 bins): {expected_calibration_error(labels, scores):.3f}. "
               f"{len(stats)} slices of {len(chosen)} patients.")
    calibration = load_calibration(dash.models_dir())
    temperature = None if calibration is None else float(calibration["temperature"])
    fitted_score = None if calibration is None else calibration.get("fitted_on", {}).get("slice_score")
    if temperature is not None and fitted_score not in (None, cascade.slice_score):
        st.info(f"The stored temperature (T = {temperature:.2f}) was fitted on the '{fitted_score}' score, not the "
                f"live models' '{cascade.slice_score}': not shown.")
    elif temperature is not None and st.toggle(f"Show the temperature-scaled slice score (T = {temperature:.2f}, "
                                               f"fitted on {fitted_on_words(calibration)})", key="show_calibrated"):
        scaled = apply_temperature(scores, temperature)
        left, _ = st.columns(2)
        left.plotly_chart(reliability_figure(labels, scaled), width="stretch", key="reliability_scaled")
        st.caption(f"ECE after temperature scaling: {expected_calibration_error(labels, scaled):.3f}. "
                   "Scaling keeps the ranking (ROC), so the threshold presets above are unaffected.")
