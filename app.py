"""brainseg dashboard: the router. Run with `streamlit run app.py`."""

import streamlit as st

st.set_page_config(page_title="brainseg · LGG MRI review", page_icon="🧠", layout="wide")

pages = st.navigation([
    st.Page("pages/patients.py", title="Patients", icon="🩻", default=True),
    st.Page("pages/upload.py", title="Upload", icon="📤"),
    st.Page("pages/threshold.py", title="Threshold & metrics", icon="🎚️"),
    st.Page("pages/dataset.py", title="Dataset", icon="📊"),
    st.Page("pages/model_card.py", title="Model card", icon="📄"),
])
pages.run()  # each page draws the shared sidebar itself (dashboard.sidebar)
