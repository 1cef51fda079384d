"""Upload: run the cascade on your own slices (optionally with masks) and download the results."""

import io
import zipfile

import numpy as np
import pandas as pd
import streamlit as st

from brainseg.app import dashboard as dash
from brainseg.core import metrics as metrics
from brainseg.inference.uploads import ALLOWED_SUFFIXES, encode_mask_png, encode_mask_tiff, pair_uploads
from brainseg.reports.overlays import (
    CHANNEL_VIEWS,
    DIFFERENCE_COLORS,
    channel_view,
    difference_view,
    legend_html,
    overlay,
)

st.title("Upload slices")
dash.sidebar()
st.markdown(
    "Upload one or more axial slices (.tif, .tiff, .png, .jpg). Add a mask by uploading it with the same name "
    "plus `_mask` (e.g. `case_12.tif` and `case_12_mask.tif`). Slices of another size are resized to 256×256; "
    "grayscale images are read as FLAIR. The models were trained on 3-channel (pre-contrast, FLAIR, "
    "post-contrast) LGG slices: other images give outputs of unknown validity."
)
cascade = dash.require_cascade()
if cascade is None:
    st.stop()
threshold = dash.threshold()

# No `type=` filter: every file reaches brainseg.inference.uploads, which refuses what it cannot read
# with a message naming the file (Streamlit's own filter would only say "invalid extension").
uploaded = st.file_uploader(f"Slices and masks ({', '.join(ALLOWED_SUFFIXES)})", accept_multiple_files=True,
                            key="uploads")
if not uploaded:
    st.info("No files yet.")
    st.stop()

slices, refused = pair_uploads([(f.name, f.getvalue()) for f in uploaded])
for name, message in refused:
    st.error(f"**{name}** refused: {message}")
if not slices:
    st.warning("None of the uploaded files could be used.")
    st.stop()

with st.spinner(f"Running the cascade on {len(slices)} slice(s)…"):
    result = cascade.predict(np.stack([s.image for s in slices]))
masks = result.masks(threshold)

table = pd.DataFrame({
    "file": [s.name for s in slices],
    "tumor_probability": result.probabilities.round(4),
    "threshold": threshold,
    "tumor_called": masks.any(axis=(1, 2)),
    "predicted_tumor_pixels": masks.sum(axis=(1, 2)),
    "dice_vs_uploaded_mask": [None if s.mask is None else round(metrics.dice(m, s.mask), 4)
                              for s, m in zip(slices, masks, strict=True)],
    "notes": ["; ".join(s.notes) for s in slices],
})
st.dataframe(table, hide_index=True, width="stretch")

archive = io.BytesIO()
with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
    for item, mask in zip(slices, masks, strict=True):
        stem = item.name.rsplit(".", 1)[0]
        bundle.writestr(f"{stem}_pred_mask.png", encode_mask_png(mask))
        bundle.writestr(f"{stem}_pred_mask.tif", encode_mask_tiff(mask))
    bundle.writestr("predictions.csv", table.to_csv(index=False))
downloads = st.columns(2)
downloads[0].download_button("Download probabilities (CSV)", table.to_csv(index=False), "predictions.csv",
                             "text/csv", key="download_csv")
downloads[1].download_button("Download all masks (PNG + TIFF) and CSV (zip)", archive.getvalue(),
                             "brainseg_predictions.zip", "application/zip", key="download_zip")

st.divider()
controls = st.columns([3, 2, 2, 2])
choice = controls[0].selectbox("Slice", range(len(slices)), format_func=lambda k: slices[k].name, key="upload_pick")
view = controls[1].selectbox("MRI view", list(CHANNEL_VIEWS), key="upload_view")
style = controls[2].radio("Masks as", ["filled", "contour"], horizontal=True, key="upload_style")
opacity = controls[3].slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="upload_opacity")
item, mask = slices[choice], masks[choice]
for note in item.notes:
    st.info(f"{item.name}: {note}")
base = channel_view(item.image, view)
st.metric(f"P(tumor) — decision at {threshold:.3f}", f"{result.probabilities[choice]:.3f}",
          "tumor" if mask.any() else "no tumor", delta_color="off")
left, right = st.columns(2)
left.image(overlay(base, item.mask, mask, opacity, style), caption="Ground truth (red) and prediction (green)"
           if item.mask is not None else "Prediction (green)", width="stretch")
if item.mask is not None:
    right.image(difference_view(base, mask, item.mask, max(opacity, 0.5), style), caption="Difference",
                width="stretch")
    st.markdown(legend_html(DIFFERENCE_COLORS), unsafe_allow_html=True)
else:
    right.image(base, caption=f"{view}, no overlay", width="stretch")
single = st.columns(2)
single[0].download_button("This mask as PNG", encode_mask_png(mask), f"{item.name.rsplit('.', 1)[0]}_pred_mask.png",
                          "image/png", key="download_png")
single[1].download_button("This mask as TIFF", encode_mask_tiff(mask),
                          f"{item.name.rsplit('.', 1)[0]}_pred_mask.tif", "image/tiff", key="download_tif")
