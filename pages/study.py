"""Study: a NIfTI volume or a zipped DICOM series in, the cascade's mask back in its own grid, volume in mL."""

import json

import streamlit as st

from brainseg.app import dashboard as dash
from brainseg.app import held_uploads, study_view
from brainseg.app.correction import correction_section
from brainseg.errors import BrainsegError
from brainseg.studies.outputs import dicom_seg_bytes, nifti_mask_bytes, summary

st.title("Study (NIfTI / DICOM)")
dash.sidebar()
st.markdown(
    "Upload a whole study: each sequence as a NIfTI file (`.nii`, `.nii.gz`) or as a zip of a folder holding one "
    "DICOM series. FLAIR is required; pre- and post-contrast are optional (FLAIR is used in their place, as the "
    "training data did). Volumes are reoriented to axial slices, scaled per volume and resampled to 256×256 for "
    "the models; the mask comes back in the FLAIR's own voxel grid. Files are read in memory and not kept."
)
cascade = dash.require_cascade()
if cascade is None:
    st.stop()
threshold = dash.threshold()

columns = st.columns(3)
uploads = {}
for column, (role, label) in zip(columns, study_view.ROLES.items(), strict=True):
    # Clearing the FLAIR box forgets the held study (the other two are optional).
    file = column.file_uploader(label, key=f"study_{role}",
                                on_change=held_uploads.forget_when_emptied(study_view.HELD, "study_flair"))
    if file is not None:
        uploads[role] = (file.name, file.getvalue())
held = held_uploads.held_files(study_view.HELD)
if not uploads and held:
    uploads = held
    held_uploads.offer_to_forget(study_view.HELD, "the study", "Forget this study", "forget_study")
if "flair" not in uploads:
    st.info("Upload at least the FLAIR sequence.")
    st.stop()

try:
    with st.spinner("Reading the study and running the cascade…"):
        prediction = study_view.study_prediction(cascade, uploads, dash.models_key())
except BrainsegError as err:
    st.error(str(err))
    st.stop()

study = prediction.study
for warning in study.warnings:
    st.warning(warning)
key = study_view.study_key(uploads)
# Saved corrections count whether or not correction mode is on (saves happen in callbacks, before this run).
corrections = study_view.saved_study_corrections(key)
cols = st.columns(3)
cols[0].metric(f"Tumor volume at {dash.format_threshold(threshold)}", f"{prediction.tumor_volume_ml(threshold):.2f} mL",
               help="Mask voxels in the FLAIR's own grid × the voxel volume from its spacing.")
cols[1].metric("Slices called tumor", f"{int(prediction.result.decisions(threshold).sum())} / {len(study)}")
if corrections:
    cols[2].metric("Tumor volume with corrections", f"{prediction.tumor_volume_ml(threshold, corrections):.2f} mL",
                   help="The latest saved correction on the corrected slices, the AI's mask elsewhere.")
st.caption(f"FLAIR ({study.flair.kind}): {' × '.join(map(str, study.flair.shape))} voxels of "
           f"{' × '.join(f'{s:.2f}' for s in study.flair.spacing)} mm, stored "
           f"{study.reorientation.native_axcodes()}; shown as axial slices, inferior to superior.")

index = study_view.slice_viewer(prediction, threshold)
with correction_section("study_correction_mode",
                        "The same editor as on the Patients page; each save is a new version in the review store, "
                        "filed under a digest of the FLAIR file (no patient name).") as log:
    if log is not None:
        study_view.study_correction(prediction, index, threshold, cascade, log, dash.reviewer(), key)

if corrections:
    st.info(f"{len(corrections)} slice(s) of this study have saved corrections: the corrected mask below uses the "
            "latest version on those slices and the AI's mask elsewhere.")
    st.download_button("Mask with corrections, NIfTI (FLAIR grid)",
                       lambda: nifti_mask_bytes(prediction, threshold, corrections=corrections),
                       "brainseg_mask_corrected.nii.gz", "application/gzip", key="study_download_corrected")
downloads = st.columns(3)
downloads[0].download_button("Mask, NIfTI (FLAIR grid)", lambda: nifti_mask_bytes(prediction, threshold),
                             "brainseg_mask.nii.gz", "application/gzip", key="study_download_nifti")
if study.flair.kind == "dicom":
    downloads[1].download_button("Mask, DICOM SEG", lambda: dicom_seg_bytes(prediction, threshold),
                                 "brainseg_seg.dcm", "application/dicom", key="study_download_seg")
downloads[2].download_button(
    "Summary (JSON)", lambda: json.dumps(summary(prediction, cascade, threshold), indent=2, default=float),
    "brainseg_summary.json", "application/json", key="study_download_summary")
st.caption("Research use only — not for diagnosis. File names carry no patient information.")
