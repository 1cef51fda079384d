"""Plotly figures for the dashboard (the library builds them; pages only display them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from brainseg.core import metrics
from brainseg.evaluation.operating_point import threshold_text
from brainseg.inference.cascade import passes_gate
from brainseg.reports.overlays import PREDICTION_COLOR, TRUTH_COLOR


def _rgb(color: tuple[int, int, int]) -> str:
    return f"rgb{color}"


def burden_strip(slices: np.ndarray, truth_pixels: np.ndarray, predicted_pixels: np.ndarray,
                 probabilities: np.ndarray, threshold: float, current_slice: int | None = None) -> go.Figure:
    """Tumor area per slice (truth and cascade) with the classifier probability and threshold on a 2nd axis."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=slices, y=truth_pixels, name="ground-truth area", marker_color=_rgb(TRUTH_COLOR), opacity=0.75)
    fig.add_bar(x=slices, y=predicted_pixels, name="predicted area", marker_color=_rgb(PREDICTION_COLOR),
                opacity=0.75)
    fig.add_scatter(x=slices, y=probabilities, name="slice score", mode="lines+markers", line={"color": "#333"},
                    secondary_y=True)
    fig.add_scatter(x=[slices.min() - 0.5, slices.max() + 0.5], y=[threshold, threshold], mode="lines",
                    name=f"threshold {threshold_text(threshold)}", line={"color": "#ff7f0e", "dash": "dash"},
                    secondary_y=True)
    if current_slice is not None:
        fig.add_vline(x=current_slice, line={"color": "#1f77b4", "width": 2})
    fig.update_layout(barmode="group", height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      legend={"orientation": "h", "y": -0.3}, clickmode="event+select")
    fig.update_xaxes(title_text="slice")
    fig.update_yaxes(title_text="tumor pixels", secondary_y=False)
    fig.update_yaxes(title_text="slice score", range=[0, 1.02], tickvals=[0, 0.25, 0.5, 0.75, 1.0], showgrid=False,
                     secondary_y=True)
    return fig


def roc_figure(labels: np.ndarray, scores: np.ndarray, threshold: float) -> go.Figure:
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    at = metrics.classification_at(labels, passes_gate(scores, threshold))
    fig = go.Figure()
    fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"ROC (AUC {metrics.roc_auc(labels, scores):.3f})")
    fig.add_scatter(x=[1 - at["specificity"]], y=[at["sensitivity"]], mode="markers",
                    name=f"threshold {threshold_text(threshold)}",
                    marker={"size": 12, "color": "#ff7f0e"})
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#aaa"}, showlegend=False)
    fig.update_layout(xaxis_title="1 - specificity", yaxis_title="sensitivity", height=360,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="ROC, slice level",
                      legend={"x": 0.4, "y": 0.05})
    return fig


def precision_recall_figure(labels: np.ndarray, scores: np.ndarray, threshold: float) -> go.Figure:
    precision, recall, _ = metrics.precision_recall_curve(labels, scores)
    at = metrics.classification_at(labels, passes_gate(scores, threshold))
    fig = go.Figure()
    fig.add_scatter(x=recall, y=precision, mode="lines", name="precision-recall")
    fig.add_scatter(x=[at["sensitivity"]], y=[at["precision"]], mode="markers",
                    name=f"threshold {threshold_text(threshold)}",
                    marker={"size": 12, "color": "#ff7f0e"})
    fig.update_layout(xaxis_title="recall (sensitivity)", yaxis_title="precision", height=360,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="Precision-recall, slice level",
                      legend={"x": 0.02, "y": 0.05})
    return fig


def confusion_figure(counts: dict[str, int], title: str) -> go.Figure:
    z = [[counts["tp"], counts["fn"]], [counts["fp"], counts["tn"]]]
    fig = go.Figure(go.Heatmap(z=z, x=["called tumor", "called no tumor"], y=["tumor", "no tumor"],
                               text=[[str(v) for v in row] for row in z], texttemplate="%{text}",
                               colorscale="Blues", showscale=False))
    fig.update_layout(title=title, height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"autorange": "reversed"})
    return fig


def class_balance_figure(manifest: pd.DataFrame) -> go.Figure:
    counts = manifest["has_tumor"].map({True: "tumor", False: "no tumor"}).value_counts()
    fig = go.Figure(go.Bar(x=counts.index, y=counts.values, text=counts.values, textposition="auto",
                           marker_color=["#1f77b4" if k == "no tumor" else _rgb(TRUTH_COLOR) for k in counts.index]))
    fig.update_layout(title="Slices with and without tumor", height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def slices_per_patient_figure(patients: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_histogram(x=patients["n_slices"], name="all slices", opacity=0.7)
    fig.add_histogram(x=patients["n_tumor_slices"], name="tumor slices", opacity=0.7,
                      marker_color=_rgb(TRUTH_COLOR))
    fig.update_layout(barmode="overlay", title="Slices per patient", xaxis_title="slices", yaxis_title="patients",
                      height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def burden_by_institution_figure(patients: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for institution, group in patients.groupby("institution"):
        fig.add_box(y=group["tumor_pixels"], name=f"{institution} ({len(group)})", boxpoints="all")
    fig.update_layout(title="Tumor burden by institution (tumor pixels per patient)", showlegend=False, height=320,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def reliability_figure(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 10) -> go.Figure:
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(np.asarray(labels, int), probabilities, n_bins=n_bins)
    fig = go.Figure()
    fig.add_scatter(x=predicted, y=observed, mode="lines+markers", name="slice score")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#aaa"}, name="perfect")
    fig.update_layout(title="Reliability", xaxis_title="mean slice score", yaxis_title="observed tumor share",
                      height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def _mesh(volume: np.ndarray, spacing: tuple[float, float, float], color: str, name: str,
          opacity: float) -> go.Mesh3d | None:
    from skimage.measure import marching_cubes

    if volume.sum() == 0 or min(volume.shape) < 2:
        return None
    padded = np.pad(volume.astype(np.float32), 1)  # closes surfaces at the stack's ends
    vertices, faces, _, _ = marching_cubes(padded, 0.5, spacing=spacing)
    z, y, x = vertices.T
    return go.Mesh3d(x=x, y=y, z=z, i=faces[:, 0], j=faces[:, 1], k=faces[:, 2], color=color, opacity=opacity,
                     name=name, showlegend=True, hoverinfo="name")


def volume_figure(images: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray, step: int = 2,
                  slice_spacing: float = 4.0) -> go.Figure:
    """Rotatable 3-D surfaces: brain outline (FLAIR, Otsu threshold), ground truth and prediction.

    Volumes are subsampled by ``step`` in-plane. Slice spacing is not in the source data; slices are
    drawn ``slice_spacing`` pixel-widths apart.
    """
    from skimage.filters import threshold_otsu

    flair = images[:, ::step, ::step, 1].astype(np.float32)
    brain = flair > threshold_otsu(flair) if flair.max() > flair.min() else np.zeros_like(flair, bool)
    spacing = (slice_spacing, float(step), float(step))  # axes in pixels of the 256x256 slice
    fig = go.Figure()
    for volume, color, name, opacity in (
        (brain, "lightgray", "brain outline", 0.08),
        (truth, _rgb(TRUTH_COLOR), "ground truth", 0.45),
        (prediction, _rgb(PREDICTION_COLOR), "prediction", 0.45),
    ):
        if volume is None:
            continue
        mesh = _mesh(volume[:, ::step, ::step] if volume is not brain else volume, spacing, color, name, opacity)
        if mesh is not None:
            fig.add_trace(mesh)
    fig.update_layout(height=520, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend={"orientation": "h"},
                      scene={"aspectmode": "data", "xaxis_title": "column (px)", "yaxis_title": "row (px)",
                             "zaxis_title": f"slices ({slice_spacing:g} px apart)"})
    return fig


def crossval_dice_figure(per_patient: pd.DataFrame, goal: float | None = None) -> go.Figure:
    """Out-of-fold cascade Dice per volume against tumor size, one point per patient, coloured by fold."""
    fig = go.Figure()
    for fold, rows in per_patient.groupby("fold"):
        fig.add_scatter(x=rows["tumor_pixels"], y=rows["cascade_dice"], mode="markers", name=f"fold {fold}",
                        text=rows["patient_id"], marker={"size": 9, "opacity": 0.8},
                        hovertemplate="%{text}<br>Dice %{y:.3f}<br>%{x} tumor px<extra></extra>")
    mean = float(per_patient["cascade_dice"].mean())
    # The mean's label below its line, the goal's above its own: the two lines can be close.
    fig.add_hline(y=mean, line={"dash": "dot", "color": "#555"}, annotation_text=f"mean {mean:.3f}",
                  annotation_position="bottom right")
    if goal is not None:
        fig.add_hline(y=goal, line={"dash": "dash", "color": "#d62728"}, annotation_text=f"goal {goal}",
                      annotation_position="top right")
    fig.update_layout(title=f"Cross-validation: cascade Dice per volume, {len(per_patient)} patients out of fold",
                      xaxis={"title": "tumor pixels in the expert masks (256x256 slices)", "type": "log"},
                      yaxis={"title": "Dice per volume", "range": [-0.03, 1.03]}, height=380,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


LOSS_PART_COLOURS = {  # extra pixels in warm colours, missed ones in cool
    "extra_on_tumor_free_slices": "#d62728", "extra_on_tumor_slices": "#ff9896",
    "missed_on_slices_left_empty": "#1f77b4", "missed_on_slices_drawn_on": "#aec7e8",
}


def dice_loss_figure(per_patient: pd.DataFrame, worst: int = 20, where: str = "out of fold") -> go.Figure:
    """The ``worst`` patients' 1 - Dice per volume as stacked bars split by where the wrong pixels lie
    (``metrics.dice_loss_parts``; columns ``patient_id``, ``cascade_dice`` and the parts, as in a
    cross-validation's ``per_patient``), worst at the top. ``where`` goes in the title."""
    rows = per_patient.assign(loss=1 - per_patient["cascade_dice"]).nlargest(worst, "loss").iloc[::-1]
    fig = go.Figure()
    for column, name in metrics.DICE_LOSS_PARTS.items():
        fig.add_bar(y=rows["patient_id"], x=rows[column], orientation="h", name=name,
                    marker_color=LOSS_PART_COLOURS[column],
                    customdata=rows["cascade_dice"],
                    hovertemplate="%{y}<br>" + name + ": %{x:.3f}<br>Dice %{customdata:.3f}<extra></extra>")
    shown = (f"all {len(rows)} patients" if len(rows) == len(per_patient)
             else f"the {len(rows)} lowest of {len(per_patient)} patients")
    # The legend above the bars (below, it would collide with the axis title at any height), in stacking order.
    fig.update_layout(barmode="stack", height=170 + 22 * len(rows), margin={"l": 10, "r": 10, "t": 80, "b": 10},
                      title=f"Where the Dice is lost, {where}: {shown}",
                      xaxis={"title": "1 - Dice per volume, split by where the wrong pixels lie", "range": [0, 1]},
                      legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "traceorder": "normal"})
    return fig


def gate_tradeoff_figure(rows: list[dict], chosen_threshold: float | None = None) -> go.Figure:
    """Out-of-fold specificity of the gate and of the cascade's slice decisions, and the cascade's sensitivity,
    at thresholds set for a range of target gate sensitivities (``final_fit_choices.gate_tradeoff``)."""
    table = pd.DataFrame(rows)
    fig = go.Figure()
    for column, name, dash in (("gate_specificity", "gate specificity", "solid"),
                               ("cascade_specificity", "cascade slice specificity", "dot"),
                               ("cascade_sensitivity", "cascade slice sensitivity", "dash")):
        fig.add_scatter(x=table["target_sensitivity"], y=table[column], mode="lines+markers", name=name,
                        line={"dash": dash}, customdata=table["threshold"],
                        hovertemplate="target %{x}<br>threshold %{customdata:.3f}<br>%{y:.3f}<extra></extra>")
    fig.update_layout(title="Cross-validation: what the gate costs and buys out of fold",
                      xaxis={"title": "target gate sensitivity (the threshold is set to reach it)"},
                      yaxis={"title": "out-of-fold figure", "range": [0, 1.02]}, height=340,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    if chosen_threshold is not None:
        fig.add_annotation(text=f"shipped threshold {threshold_text(chosen_threshold)}", xref="paper", yref="paper",
                           x=1, y=0.02,
                           showarrow=False, xanchor="right")
    return fig
