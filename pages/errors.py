"""Error browser: missed tumor first, then false alarms, then poorly drawn tumors; jump to any slice.

The queue depends on the threshold and the filters: they and the grid are one ``st.fragment``, so moving the
threshold or a filter redraws only the queue, from the per-slice counts gathered once with the page.
"""

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from brainseg.app import dashboard as dash
from brainseg.app.navigation import remember
from brainseg.reports.overlays import DIFFERENCE_COLORS, channel_view, difference_view, legend_html
from brainseg.review.error_queue import KINDS, LOW_DICE, error_queue, filter_queue

if st.session_state.pop("_go_to_patients", False):
    st.switch_page("pages/patients.py")

manifest, patients, cascade = dash.page_setup("Error browser", threshold_in_fragment=True)


def _offered(options: Sequence[str]) -> Callable[[list[str]], list[str]]:
    """Keep only the remembered choices still offered (another data folder has other patients)."""
    return lambda kept: [choice for choice in kept if choice in options]


@st.fragment
def error_grid(stats: pd.DataFrame, patients: pd.DataFrame) -> None:
    """Filters, counts and the thumbnails of the queue's current page (reruns alone on any of its widgets)."""
    if st.session_state.pop("_go_to_patients", False):  # an "Open in Patients" click reruns only this fragment
        st.switch_page("pages/patients.py")
    dash.sidebar_threshold()
    threshold = dash.threshold()
    queue = error_queue(stats, threshold)

    # Filters and page are remembered: "Open in Patients" and back must find the queue as the reviewer left it.
    filters = st.columns([3, 2, 3, 2])
    patient_ids, institutions = patients["patient_id"].tolist(), sorted(patients["institution"].unique())
    chosen_patients = filters[0].multiselect("Patients", patient_ids,
                                             **remember("errors_patients", [], fit=_offered(patient_ids)))
    chosen_institutions = filters[1].multiselect("Institutions", institutions,
                                                 **remember("errors_institutions", [], fit=_offered(institutions)))
    chosen_kinds = filters[2].multiselect("Kinds", KINDS, **remember("errors_kinds", [], fit=_offered(KINDS)))
    min_size = filters[3].number_input("Min. tumor size (px)", 0, 65536, step=50,
                                       help="hide tumor slices smaller than this (false positives stay)",
                                       **remember("errors_min_size", 0))
    shown = filter_queue(queue, chosen_patients, chosen_institutions, int(min_size), chosen_kinds)
    counts = shown["kind"].value_counts().reindex(KINDS, fill_value=0)
    st.markdown(f"**{len(shown)} slices** at threshold {dash.format_threshold(threshold)}: "
                + ", ".join(f"{count} {kind}" for kind, count in counts.items()))
    st.caption(f"Missed by gate: a tumor slice whose score is below the threshold. Missed by segmenter: it passed "
               f"the gate but its mask is empty. False positive: a tumor-free slice called tumor. Low Dice: a tumor "
               f"slice called, with Dice < {LOW_DICE} between its mask and the truth.")
    st.markdown(legend_html(DIFFERENCE_COLORS), unsafe_allow_html=True)
    if shown.empty:
        st.success("No errors under these filters.")
        return

    per_page = 12
    pages_total = (len(shown) - 1) // per_page + 1
    # A threshold or filter change that alters the page count keeps the page, clamped to the new count.
    page = (st.number_input("Page", 1, pages_total,
                            **remember("errors_page", 1, fit=lambda kept: min(max(int(kept), 1), pages_total)))
            if pages_total > 1 else 1)
    rows = shown.iloc[(page - 1) * per_page : page * per_page]
    grid = st.columns(4)
    # A page's patients may have left the prediction cache (it holds a dozen): say so while they are read again.
    progress = st.progress(0.0, text=f"Drawing page {page} of {pages_total}…")
    for position, row in enumerate(rows.itertuples(index=False)):
        progress.progress(position / len(rows), text=f"Drawing page {page} of {pages_total}: {row.patient_id}…")
        prediction = dash.get_patient_prediction(dash.data_dir(), row.patient_id, dash.models_key())
        index = int(np.searchsorted(prediction["rows"]["slice"].to_numpy(), row.slice))
        result = dash.patient_result(prediction)
        mask = result.masks(threshold)[index]
        base = channel_view(prediction["images"][index], "FLAIR")
        cell = grid[position % 4]
        cell.image(difference_view(base, mask, prediction["truth"][index]), width="stretch",
                   caption=f"{row.kind}: {row.patient_id} slice {row.slice} · score "
                           f"{dash.format_score(row.probability, threshold)} · truth {row.truth_pixels} px · "
                           f"Dice {dash.format_score(row.dice, LOW_DICE)}")
        cell.button("Open in Patients", key=f"open_{row.patient_id}_{row.slice}", on_click=dash.open_in_patients,
                    args=(row.patient_id, index), width="stretch")
    progress.empty()


error_grid(dash.collect_stats(patients["patient_id"].tolist()), patients)
