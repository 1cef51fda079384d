"""Correction mode: edit the AI's mask on one slice and save it as a new version in the review store.

Drawing goes through Plotly selections in ``st.plotly_chart`` (no custom component): a click stamps a disk of
the brush size, a box or lasso selection paints (or erases) the region it encloses. Chosen over
streamlit-drawable-canvas because its latest release (0.13.0) fails at import with this project's Streamlit
(1.67: its components-v2 registration raises), and a browser component that is not maintained in step
with Streamlit would break the Patients page; Plotly selections are part of Streamlit itself.

``MaskEditor`` is the pure editing logic (brush, eraser, fill, undo, clear), tested without Streamlit;
``correction_panel`` draws it for any (image, starting mask, context), so the Patients page and a study page
share it. The expert's ``_mask.tif`` is never written: corrections live only in the review store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from scipy import ndimage
from skimage.draw import disk, polygon

from brainseg.app.dashboard import format_threshold, require_review_log
from brainseg.app.navigation import remember
from brainseg.core import metrics
from brainseg.errors import BrainsegError
from brainseg.review.review_log import ReviewLog

BRUSH, ERASER = "brush", "eraser"
MODES = (BRUSH, ERASER)
STATE_KEY = "correction_state"
PARKED_KEY = "correction_parked"  # editors with unsaved edits on slices the reviewer moved away from, by editor key
MAX_PARKED = 24  # a session keeps this many; the oldest beyond it is dropped with a notice
AI_START = 0  # the "Start from" choice meaning the cascade's mask
GRID_STEP = 4  # the invisible click targets' spacing in pixels: fine enough to place a brush, light to send


@dataclass(frozen=True)
class CorrectionContext:
    """What a saved correction records besides its mask: which slice, and what the AI showed."""

    patient_id: str
    case_name: str
    slice_number: int
    slice_file: str
    threshold: float
    classifier_sha256: str
    segmenter_sha256: str

    @property
    def key(self) -> tuple:
        """The editor's identity: slice and models (both shape the AI's mask a save is compared with). Not the
        threshold: nudging it must not discard edits."""
        return (self.patient_id, self.slice_number, self.classifier_sha256, self.segmenter_sha256)


@dataclass
class MaskEditor:
    """An editable binary mask with undo: every edit pushes the previous mask on the history."""

    start: np.ndarray
    parent_version: int | None = None  # None: the cascade's mask
    mask: np.ndarray = field(init=False)
    history: list[np.ndarray] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.start = np.asarray(self.start, bool).copy()
        self.mask = self.start.copy()

    def _apply(self, new_mask: np.ndarray) -> bool:
        if np.array_equal(new_mask, self.mask):
            return False
        self.history.append(self.mask)
        self.mask = new_mask
        return True

    def paint(self, region: np.ndarray, mode: str) -> bool:
        """Add (brush) or remove (eraser) the pixels of ``region``; returns whether the mask changed."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        region = np.asarray(region, bool)
        return self._apply(self.mask | region if mode == BRUSH else self.mask & ~region)

    def stamp(self, points: list[tuple[float, float]], radius: int, mode: str) -> bool:
        """Disks of ``radius`` pixels at (x = column, y = row) points: one brush or eraser dab each."""
        return self.paint(disk_region(points, radius, self.mask.shape), mode)

    def fill(self) -> bool:
        """Fill the holes inside the mask's outlines (a drawn ring becomes a solid region)."""
        return self._apply(ndimage.binary_fill_holes(self.mask))

    def clear(self) -> bool:
        """Empty the mask (undoable)."""
        return self._apply(np.zeros_like(self.mask))

    def reset(self, start: np.ndarray | None = None) -> bool:
        """Back to the starting mask, or to ``start``, which becomes the starting mask (undoable)."""
        if start is not None:
            self.start = np.asarray(start, bool).copy()
        return self._apply(self.start.copy())

    @property
    def pending(self) -> bool:
        """Whether starting over would lose anything: edits, or steps to undo."""
        return bool(self.history) or not np.array_equal(self.mask, self.start)

    def mark_saved(self) -> None:
        """The mask is saved: nothing is pending any more (the next editor starts from the saved version)."""
        self.start = self.mask.copy()
        self.history.clear()

    def follow(self, start: np.ndarray) -> bool:
        """Start over from a changed starting mask when nothing is pending; returns whether it did.

        With pending edits the editor is left as it is: the caller tells the reviewer, and Reset loads ``start``.
        """
        start = np.asarray(start, bool)
        if np.array_equal(start, self.start) or self.pending:
            return False
        self.start = start.copy()
        self.mask = start.copy()
        return True

    def undo(self) -> bool:
        if not self.history:
            return False
        self.mask = self.history.pop()
        return True


def disk_region(points: list[tuple[float, float]], radius: int, shape: tuple[int, int]) -> np.ndarray:
    region = np.zeros(shape, bool)
    for x, y in points:
        rows, cols = disk((float(y), float(x)), max(0, float(radius)) + 0.5, shape=shape)  # r px away included
        region[rows, cols] = True
    return region


def polygon_region(xs: list[float], ys: list[float], shape: tuple[int, int]) -> np.ndarray:
    """The pixels inside a lasso path (x = column, y = row)."""
    region = np.zeros(shape, bool)
    rows, cols = polygon(np.asarray(ys, float), np.asarray(xs, float), shape=shape)
    region[rows, cols] = True
    return region


def box_region(xs: list[float], ys: list[float], shape: tuple[int, int]) -> np.ndarray:
    region = np.zeros(shape, bool)
    r0, r1 = round(min(ys)), round(max(ys))
    c0, c1 = round(min(xs)), round(max(xs))
    region[max(r0, 0) : max(r1 + 1, 0), max(c0, 0) : max(c1 + 1, 0)] = True
    return region


def selection_region(selection: dict, radius: int, shape: tuple[int, int]) -> np.ndarray:
    """The pixels a Plotly selection event covers: lasso or box geometry, else disks at the clicked points."""
    region = np.zeros(shape, bool)
    for lasso in selection.get("lasso", []) or []:
        region |= polygon_region(lasso.get("x", []), lasso.get("y", []), shape)
    for box in selection.get("box", []) or []:
        if box.get("x") and box.get("y"):
            region |= box_region(box["x"], box["y"], shape)
    if not region.any():
        points = [(p["x"], p["y"]) for p in selection.get("points", []) or [] if "x" in p and "y" in p]
        region |= disk_region(points, radius, shape)
    return region


def compare(mask: np.ndarray, ai_mask: np.ndarray, truth: np.ndarray | None) -> dict[str, float | int | None]:
    """The correction against the AI's mask and, when there is one, the expert's (Dice, pixels added/removed)."""
    mask, ai_mask = np.asarray(mask, bool), np.asarray(ai_mask, bool)
    result: dict[str, float | int | None] = {
        "dice_vs_ai": metrics.dice(mask, ai_mask),
        "pixels_added": int((mask & ~ai_mask).sum()),
        "pixels_removed": int((ai_mask & ~mask).sum()),
        "dice_vs_expert": None, "ai_dice_vs_expert": None,
    }
    if truth is not None:
        result["dice_vs_expert"] = metrics.dice(mask, truth)
        result["ai_dice_vs_expert"] = metrics.dice(ai_mask, truth)
    return result


def editor_state(state: object, context: CorrectionContext, start: np.ndarray,
                 parent_version: int | None, parked: dict | None = None) -> dict:
    """The editor's state for this slice: a new editor when the slice, model or chosen start changes.

    A threshold change only changes ``start`` (the AI's mask): an editor with pending edits keeps them, and
    ``"start"`` / ``"threshold"`` record what Reset would load; ``"started_at"`` is the threshold the editor's
    own start was taken at. Moving to another slice or start *parks* an editor with unsaved edits in ``parked``
    (the session's, by editor key) and coming back restores it: nothing is lost by browsing. Other models start a
    new editor (a save records the models and is compared with their mask): the pending edits they replace,
    current or parked, are dropped and named in ``"notice"``, for the page to say once.
    """
    parked = {} if parked is None else parked
    key = (*context.key, parent_version)
    if isinstance(state, dict) and state.get("key") == key:
        if state["editor"].follow(start):
            state["started_at"] = context.threshold  # nothing was pending: the editor took the new AI mask
    else:
        previous = state if isinstance(state, dict) else None
        notices = []
        if previous is not None and previous["editor"].pending:
            if _models(previous["key"]) == _models(key):
                parked[previous["key"]] = previous
            elif previous["key"][:2] == key[:2]:
                notices.append(f"Unsaved edits on slice {context.slice_number} of {context.patient_id} were made "
                               "while other models were loaded and were discarded: the editor starts again from "
                               "these models' mask.")
        stale = [k for k in parked if _models(k) != _models(key)]
        if stale:
            notices.append(f"Unsaved edits on {_slices_words(stale)}, made while other models were loaded, were "
                           "discarded.")
        for stale_key in stale:
            del parked[stale_key]
        while len(parked) > MAX_PARKED:
            oldest = next(iter(parked))  # dicts keep insertion order: the first parked
            del parked[oldest]
            notices.append(f"Unsaved edits on {_slices_words([oldest])} were dropped: a session keeps those of "
                           f"{MAX_PARKED} slices.")
        restored = parked.pop(key, None)
        state = restored or {"key": key, "editor": MaskEditor(start, parent_version), "chart": 0,
                             "started_at": context.threshold}
        state.pop("notice", None)
        if restored is not None:
            notices.append("Your unsaved edits on this slice are back (kept while you looked at other slices).")
        if notices:
            state["notice"] = " ".join(notices)
    state["start"], state["threshold"] = np.asarray(start, bool).copy(), context.threshold
    return state


def _models(editor_key: tuple) -> tuple:
    return editor_key[2:4]


def _slices_words(editor_keys: list[tuple]) -> str:
    return ", ".join(f"slice {k[1]} of {k[0]}" for k in editor_keys)


def parked_slices(parked: dict) -> str:
    """The slices whose unsaved edits are kept aside, in words ('' when none)."""
    return _slices_words(list(parked))


def start_moved(state: dict) -> bool:
    """Whether the editor's edits began from another mask than the one Reset now loads."""
    return not np.array_equal(state["editor"].start, state["start"])


def editor_for(context: CorrectionContext, start: np.ndarray, parent_version: int | None) -> MaskEditor:
    """The session's editor for this slice (see ``editor_state``)."""
    parked = st.session_state.setdefault(PARKED_KEY, {})
    state = editor_state(st.session_state.get(STATE_KEY), context, start, parent_version, parked)
    st.session_state[STATE_KEY] = state
    return state["editor"]


# How a stroke is drawn -> Plotly's drag mode. Streamlit only turns a click into a selection when the chart
# is not in a select/lasso drag mode, so clicking (brush dabs) uses 'pan'.
STROKES = {"click": "pan", "lasso": "lasso", "box": "select"}


def _edit_figure(base_rgb: np.ndarray, mask: np.ndarray, ai_mask: np.ndarray, stroke: str = "click") -> go.Figure:
    from brainseg.reports.overlays import CORRECTION_COLOR, PREDICTION_COLOR, paint

    # The AI's mask in its colour of every other view (green), outlined for reference; the reviewer's own mask in
    # a colour of its own, so green always means "the AI" on the page.
    shown = paint(base_rgb, mask, CORRECTION_COLOR, 0.5, "filled")
    contour = paint(shown, ai_mask, PREDICTION_COLOR, 1.0, "contour")
    height, width = mask.shape
    figure = go.Figure(go.Image(z=contour, hoverinfo="skip"))
    ys, xs = np.mgrid[0:height:GRID_STEP, 0:width:GRID_STEP]
    figure.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="markers", hoverinfo="none",
                                marker={"size": GRID_STEP * 2, "opacity": 0.01, "color": f"rgb{CORRECTION_COLOR}"},
                                showlegend=False))
    figure.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, height=560, dragmode=STROKES[stroke],
                         xaxis={"visible": False, "range": [-0.5, width - 0.5]},
                         yaxis={"visible": False, "range": [height - 0.5, -0.5], "scaleanchor": "x"})
    return figure


def _apply_selection(chart_key: str, mode_key: str, size_key: str) -> None:
    state = st.session_state[STATE_KEY]
    selection = st.session_state[chart_key].selection
    editor: MaskEditor = state["editor"]
    region = selection_region(dict(selection), int(st.session_state[size_key]), editor.mask.shape)
    if region.any():
        editor.paint(region, st.session_state[mode_key])
        state["chart"] += 1  # a fresh chart: the next identical selection is a new event


def _act(action: str) -> None:
    getattr(st.session_state[STATE_KEY]["editor"], action)()


def _reset() -> None:
    # Reset loads the start as the page shows it now (the AI's mask at the current threshold), not the one the
    # edits began from.
    state = st.session_state[STATE_KEY]
    state["editor"].reset(state["start"])
    state["started_at"] = state["threshold"]


SAVED_KEY = "_correction_saved"  # the last save's outcome, shown once
START_FOR_KEY = "_correction_start_for"  # the (patient, slice) the start choice and the note belong to


def _save(log: ReviewLog, context: CorrectionContext, ai_mask: np.ndarray, reviewer: str,
          parent: int | None) -> None:
    editor: MaskEditor = st.session_state[STATE_KEY]["editor"]
    try:
        saved = log.save_correction(
            patient_id=context.patient_id, case_name=context.case_name, slice_number=context.slice_number,
            slice_file=context.slice_file, mask=editor.mask, ai_mask=ai_mask, reviewer=reviewer,
            threshold=context.threshold, classifier_sha256=context.classifier_sha256,
            segmenter_sha256=context.segmenter_sha256, parent_version=parent,
            comment=str(st.session_state.get("correction_comment", "")))
    except BrainsegError as err:
        st.session_state[SAVED_KEY] = ("error", f"Not saved: {err}")
        return
    editor.mark_saved()  # saved edits are not kept aside as unsaved ones
    st.session_state["correction_start"] = saved.version  # go on editing from what was just saved
    st.session_state["correction_comment"] = ""  # the note went with this version
    st.session_state[SAVED_KEY] = (
        "ok", f"Saved version {saved.version} of {context.patient_id} slice {context.slice_number} "
              f"(+{saved.pixels_added} / −{saved.pixels_removed} px vs the AI) as {reviewer}. "
              "The expert mask is unchanged.")


def editor_legend(threshold: float) -> str:
    """The editor's one-line colour legend (HTML)."""
    from brainseg.reports.overlays import CORRECTION_COLOR, PREDICTION_COLOR, legend_html

    return legend_html({"your mask (filled)": CORRECTION_COLOR,
                        f"the AI's mask at threshold {format_threshold(threshold)} (outline)": PREDICTION_COLOR})


@contextmanager
def correction_section(toggle_key: str, toggle_help: str) -> Iterator[ReviewLog | None]:
    """The collapsible "Correct the AI's mask" section with its correction-mode toggle (both stay open on return
    from another page); yields the review store while correction mode is on and the store opens, else None (why
    it cannot open is shown). Draw the correction panel inside the ``with`` block."""
    toggle = remember(toggle_key, False)
    with st.expander("Correct the AI's mask on this slice", expanded=st.session_state[toggle_key]):
        on = st.toggle("Correction mode", **toggle, help=toggle_help)
        yield require_review_log() if on else None


def correction_panel(base_rgb: np.ndarray, ai_mask: np.ndarray, truth: np.ndarray | None,
                     context: CorrectionContext, log: ReviewLog, reviewer: str) -> None:
    """Correction mode for one slice: start from the AI's mask or a saved version, edit, compare, save.

    ``base_rgb``: the slice as shown (H, W, 3) uint8; ``ai_mask``: the cascade's mask at the context's
    threshold; ``truth``: the expert's mask, or None (uploads, studies without one).
    """
    try:
        history = log.corrections(context.patient_id, slice_number=context.slice_number)
    except BrainsegError as err:
        st.error(f"Cannot read the corrections: {err}")
        return
    # 0 stands for the AI's mask (versions count from 1): a selectbox shows a None value as "Choose an option".
    labels: dict[int, str] = {AI_START: f"the AI's mask at threshold {format_threshold(context.threshold)}"}
    for row in history.itertuples():
        labels[int(row.version)] = (f"version {row.version} by {row.reviewer or '?'} "
                                    f"({row.created_utc[:16].replace('T', ' ')})")
    # Each slice opens on its latest version (else the AI's mask) with an empty note: a start chosen or a note typed
    # on one slice must not carry over to the next, where it would fork from a stale version or mislabel a save.
    here = (context.patient_id, context.slice_number)
    if st.session_state.get(START_FOR_KEY) != here or st.session_state.get("correction_start") not in labels:
        # ... unless edits on this slice were kept aside: open on the start they were made from.
        kept = [AI_START if k[4] is None else k[4] for k in st.session_state.get(PARKED_KEY, {}) if k[:2] == here]
        st.session_state["correction_start"] = kept[-1] if kept and kept[-1] in labels else list(labels)[-1]
        st.session_state["correction_comment"] = ""
        st.session_state[START_FOR_KEY] = here
    chosen = st.selectbox("Start from", list(labels), format_func=labels.get, key="correction_start")
    parent = None if chosen == AI_START else chosen
    try:
        start = ai_mask if parent is None else log.correction_mask(
            int(history.loc[history["version"] == parent, "id"].iloc[0]))
    except BrainsegError as err:
        st.error(f"Cannot read version {parent}: {err}")
        return
    editor = editor_for(context, start, parent)
    state = st.session_state[STATE_KEY]
    if notice := state.pop("notice", None):  # once: the next run finds it gone
        st.warning(notice)
    if kept := parked_slices(st.session_state.get(PARKED_KEY, {})):
        st.caption(f"Unsaved edits kept aside on {kept}: open the slice to go on or save them.")
    if start_moved(state):
        st.info(f"The AI's mask at threshold {format_threshold(context.threshold)} differs from the one you started "
                f"from (at {format_threshold(state['started_at'])}). Your edits are kept; Reset loads the new AI "
                "mask. Pixels added / removed, Dice vs AI and a save are counted against the AI's mask at the "
                "current threshold.")

    tools = st.columns([2, 3, 3, 1, 1, 1, 1], vertical_alignment="bottom")
    # The tool, stroke and brush are remembered: a look at another page must not reset the reviewer's kit.
    tools[0].radio("Tool", MODES, horizontal=True, format_func=str.capitalize,
                   **remember("correction_mode_tool", MODES[0]))
    stroke = tools[1].radio("Draw by", list(STROKES), horizontal=True,
                            format_func={"click": "clicks (dabs)", "lasso": "lasso", "box": "box"}.get,
                            help="clicks: one dab of the brush size per click; lasso / box: the whole region "
                                 "drawn (by dragging) is painted or erased",
                            **remember("correction_stroke", next(iter(STROKES))))
    tools[2].slider("Brush size (pixels, radius)", 1, 30, **remember("correction_brush_size", 6))
    tools[3].button("Fill", on_click=_act, args=("fill",), key="correction_fill", help="fill holes inside outlines")
    tools[4].button("Undo", on_click=_act, args=("undo",), key="correction_undo", disabled=not editor.history)
    tools[5].button("Clear", on_click=_act, args=("clear",), key="correction_clear", help="empty the mask")
    tools[6].button("Reset", on_click=_reset, key="correction_reset", help="back to the start")
    st.caption("Undo steps back one edit; Clear empties the mask; Reset goes back to the starting mask; Fill fills "
               "the holes inside closed outlines.")
    chart_key = f"correction_chart_{st.session_state[STATE_KEY]['chart']}"
    st.plotly_chart(_edit_figure(base_rgb, editor.mask, ai_mask, stroke), key=chart_key, on_select=
                    lambda: _apply_selection(chart_key, "correction_mode_tool", "correction_brush_size"),
                    selection_mode=("points", "box", "lasso"), width="stretch",
                    config={"displaylogo": False, "modeBarButtonsToRemove": ["zoom2d", "pan2d", "autoScale2d"]})
    st.markdown(editor_legend(context.threshold), unsafe_allow_html=True)

    figures = compare(editor.mask, ai_mask, truth)
    cols = st.columns(5)
    cols[0].metric("Your mask", f"{int(editor.mask.sum())} px")
    cols[1].metric("Added vs AI", f"+{figures['pixels_added']} px")
    cols[2].metric("Removed vs AI", f"−{figures['pixels_removed']} px")
    cols[3].metric("Dice vs AI", f"{figures['dice_vs_ai']:.3f}")
    if figures["dice_vs_expert"] is not None:
        cols[4].metric("Dice vs expert", f"{figures['dice_vs_expert']:.3f}",
                       f"{figures['dice_vs_expert'] - figures['ai_dice_vs_expert']:+.3f} vs AI", delta_color="normal")

    st.text_input("Note with this version (optional)", key="correction_comment")
    if not reviewer:
        st.warning("Enter your reviewer name in the sidebar (or log in) to save corrections.")
    # Saved in a callback, before the page reruns: the start choices and the history below include the new version.
    st.button("Save as a new version", type="primary", key="correction_save", disabled=not reviewer,
              on_click=_save, args=(log, context, ai_mask, reviewer, parent))
    message = st.session_state.pop(SAVED_KEY, None)
    if message is not None:
        (st.success if message[0] == "ok" else st.error)(message[1])
    if not history.empty:
        st.dataframe(history[["version", "reviewer", "created_utc", "started_from", "mask_pixels", "pixels_added",
                              "pixels_removed", "comment"]], hide_index=True, width="stretch")


def corrections_zip(log: ReviewLog, data_dir: str, patient_id: str | None = None) -> bytes:
    """The latest corrections (of one patient, or all) in the Kaggle layout and as NIfTI, zipped for download.

    The original slices are looked up in the session's data folder and the allowed data folders.
    """
    from brainseg import settings
    from brainseg.review.corrections import export_zip

    folders = [Path(data_dir), *settings.data_folder_choices()]
    return export_zip(log, folders, None if patient_id is None else [patient_id])
