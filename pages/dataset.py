"""Dataset: class balance, slices per patient, tumor burden by institution, and the split."""

import pandas as pd
import streamlit as st

from brainseg.app import dashboard as dash
from brainseg.core.split import PARTS, load_split
from brainseg.reports.figures import burden_by_institution_figure, class_balance_figure, slices_per_patient_figure

manifest, patients, _ = dash.page_setup("Dataset", needs_models=False)
st.caption(f"Folder: `{dash.data_dir()}` — {len(patients)} patients, {len(manifest)} slices, "
           f"{int(manifest['has_tumor'].sum())} with tumor.")
left, right = st.columns(2)
left.plotly_chart(class_balance_figure(manifest), width="stretch")
right.plotly_chart(slices_per_patient_figure(patients), width="stretch")
st.plotly_chart(burden_by_institution_figure(patients), width="stretch")

st.subheader("Patient-level split")
try:
    split = load_split(dash.models_dir() / "split.json")
except Exception as err:
    st.warning(f"No split file: {err}")
    st.stop()
part_of = {p: part for part in PARTS for p in split[part]}
table = patients.assign(split=patients["patient_id"].map(part_of).fillna("not in split"))
counts = table.pivot_table(index="split", columns="institution", values="patient_id", aggfunc="count",
                           fill_value=0)
st.dataframe(counts, width="stretch")
st.caption("The split is by patient (never by slice), stratified by institution and tumor burden; "
           f"`{dash.models_dir() / 'split.json'}` records it. Patients of the full dataset that are not in it were "
           "never used.")
st.dataframe(pd.DataFrame(table[["patient_id", "institution", "split", "n_slices", "n_tumor_slices",
                                 "tumor_pixels"]]), hide_index=True, width="stretch")
