"""brainseg dashboard: the router. Run with `streamlit run app.py`."""

import streamlit as st

from brainseg.runtime import import_tensorflow_quietly

import_tensorflow_quietly()  # before any brainseg module pulls TensorFlow in: keeps its C++ start-up noise out of logs

st.set_page_config(page_title="brainseg · LGG MRI review", page_icon=":material/neurology:", layout="wide")

pages = st.navigation([
    st.Page("pages/patients.py", title="Patients", icon=":material/person_search:", default=True),
    st.Page("pages/upload.py", title="Upload", icon=":material/upload_file:"),
    st.Page("pages/study.py", title="Study (NIfTI / DICOM)", icon=":material/deployed_code:"),
    st.Page("pages/errors.py", title="Error browser", icon=":material/error:"),
    st.Page("pages/threshold.py", title="Threshold & metrics", icon=":material/tune:"),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/bar_chart:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
])
pages.run()  # each page draws the shared sidebar itself (dashboard.sidebar)
