"""brainseg dashboard: the router. Run with `streamlit run app.py`."""

import streamlit as st

from brainseg.runtime import import_tensorflow_quietly

st.set_page_config(page_title="brainseg · LGG MRI review", page_icon=":material/neurology:", layout="wide")

# Declared before TensorFlow's import (seconds on a cold server): until the browser has this navigation, it lists
# the files of pages/ by file name. A page opened by its address on a fresh server: see dashboard.through_the_router.
pages = st.navigation([
    st.Page("pages/patients.py", title="Patients", icon=":material/person_search:", default=True),
    st.Page("pages/upload.py", title="Upload", icon=":material/upload_file:"),
    st.Page("pages/study.py", title="Study (NIfTI / DICOM)", icon=":material/deployed_code:"),
    st.Page("pages/errors.py", title="Error browser", icon=":material/error:"),
    st.Page("pages/threshold.py", title="Threshold & metrics", icon=":material/tune:"),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/bar_chart:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
])
import_tensorflow_quietly()  # before any page pulls TensorFlow in: keeps its C++ start-up noise out of logs
pages.run()  # each page draws the shared sidebar itself (dashboard.sidebar)
