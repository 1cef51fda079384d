"""Upload: run the cascade on your own slices (optionally with masks) and download the results."""

import streamlit as st

from brainseg.app import dashboard as dash
from brainseg.app import held_uploads, navigation
from brainseg.inference.predict import mask_stem, predict_uploads
from brainseg.inference.uploads import ALLOWED_SUFFIXES, encode_mask_png, encode_mask_tiff, mask_on_upload_grid
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
    "plus `_mask` (e.g. `case_12.tif` and `case_12_mask.tif`). Slices of another size are padded to a square "
    "and resized to 256×256 (the views below); downloaded masks are brought back to each image's own size, "
    "upright as viewers show it. Slices named like the dataset's (`<case>_<n>.tif`) are read together, each "
    "with its case's neighbouring uploaded slices, as the patient pages read a patient; a slice without them is "
    "scored alone (its notes say which). Grayscale images are read as FLAIR and marked as outside the training "
    "distribution. The models were trained on 3-channel (pre-contrast, FLAIR, post-contrast) LGG slices: "
    "other images give outputs of unknown validity."
)
cascade = dash.require_cascade()
if cascade is None:
    st.stop()
threshold = dash.threshold()

HELD = "_held_upload"  # the session's last upload and its prediction (brainseg.app.held_uploads)


# No `type=` filter: every file reaches brainseg.inference.uploads, which refuses what it cannot read
# with a message naming the file (Streamlit's own filter would only say "invalid extension").
uploaded = st.file_uploader(f"Slices and masks ({', '.join(ALLOWED_SUFFIXES)})", accept_multiple_files=True,
                            key="uploads", on_change=held_uploads.forget_when_emptied(HELD, "uploads"))
files = [(f.name, f.getvalue()) for f in uploaded] if uploaded else held_uploads.held_files(HELD)
if not files:
    st.info("No files yet.")
    st.stop()
if not uploaded:
    held_uploads.offer_to_forget(HELD, f"the {len(files)} file(s)", "Forget these files", "forget_uploads")
with st.spinner(f"Reading {len(files)} file(s) and running the cascade…"):
    # Held per files and models: moving the threshold or the view re-gates these outputs, it does not rerun them.
    prediction = held_uploads.hold(HELD, files, held_uploads.digest(files, dash.models_key()),
                                   lambda chosen: predict_uploads(cascade, chosen, threshold)).value
prediction.threshold = threshold
for name, message in prediction.refused:
    st.error(f"**{name}** refused: {message.removeprefix(f'{name}: ')}")
if not prediction.slices:
    st.warning("None of the uploaded files could be used.")
    st.stop()
slices, masks, result = prediction.slices, prediction.masks, prediction.result
table = prediction.table()
n_outside = int((table["out_of_distribution"] != "").sum())
if n_outside:
    st.warning(f"{n_outside} slice(s) are **outside the training distribution** (see the `out_of_distribution` "
               "column): their decisions and masks are of unknown validity.")
st.dataframe(table, hide_index=True, width="stretch", column_config=dash.THRESHOLD_COLUMN)
st.caption("Pixel counts, Dice and IoU are on the models' grid (256×256); the masks you download are on each "
           "image's own grid, so a resized slice's counts differ from its file's (its notes say so).")
downloads = st.columns(2)
downloads[0].download_button("Download the results table (CSV)", table.to_csv(index=False), "predictions.csv",
                             "text/csv", key="download_csv")
downloads[1].download_button("Download all masks (PNG + TIFF, each on its image's own grid) and CSV (zip)",
                             prediction.archive, "brainseg_predictions.zip", "application/zip", key="download_zip")

st.divider()
controls = st.columns([3, 2, 2, 2])
# Slice and view outlive a visit to another page (the held upload does too); a kept slice past the end resets.
choice = controls[0].selectbox("Slice", range(len(slices)), format_func=lambda k: slices[k].name,
                               **navigation.remember("upload_pick", 0, lambda k: k if k in range(len(slices)) else 0))
views = list(CHANNEL_VIEWS)
view = controls[1].selectbox("MRI view", views,
                             **navigation.remember("upload_view", views[0], lambda v: v if v in views else views[0]))
style = controls[2].radio("Masks as", ["filled", "contour"], horizontal=True, key="upload_style")
opacity = controls[3].slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="upload_opacity")
item, mask = slices[choice], masks[choice]
for note in item.notes:
    st.info(f"{item.name}: {note}")
if item.out_of_distribution:
    st.warning(f"{item.name}: outside the training distribution — {item.out_of_distribution}")
base = channel_view(item.image, view)
called = bool(table["tumor_called"].iloc[choice])
st.metric(f"Slice score — decision at {dash.format_threshold(threshold)}",
          dash.format_score(result.probabilities[choice], threshold),
          ("tumor" if called else "no tumor") + (" (outside training distribution)" if item.out_of_distribution
                                                  else ""), delta_color="off", delta_arrow="off")
left, right = st.columns(2)
left.image(overlay(base, item.mask, mask, opacity, style), caption="Ground truth (red) and prediction (green)"
           if item.mask is not None else "Prediction (green)", width="stretch")
if item.mask is not None:
    right.image(difference_view(base, mask, item.mask, max(opacity, 0.5), style), caption="Difference",
                width="stretch")
    st.markdown(legend_html(DIFFERENCE_COLORS), unsafe_allow_html=True)
else:
    right.image(base, caption=f"{view}, no overlay", width="stretch")
# Files leave on the upload's own grid (the overlays above stay on the models' 256x256 grid), so they lie over
# the image in the user's viewer.
returned = mask_on_upload_grid(mask, item)
grid = "{}×{}, this image's grid".format(*item.original_size)
single = st.columns(2)
single[0].download_button(f"This mask as PNG ({grid})", encode_mask_png(returned), f"{mask_stem(item.name)}.png",
                          "image/png", key="download_png")
single[1].download_button(f"This mask as TIFF ({grid})", encode_mask_tiff(returned), f"{mask_stem(item.name)}.tif",
                          "image/tiff", key="download_tif")
