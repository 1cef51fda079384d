"""brainseg: review AI tumor detection and segmentation on brain MRI (LGG).

Subpackages, in the order data flows through them (each imports only those before it):
``core`` (Kaggle-layout data, patient split, the one preprocessing path, networks, losses, metrics),
``training``, ``inference`` (model loading, the cascade and its rules, results table, user files, the
prediction store), ``scoring`` (batch scoring into the store, in process or on Ray), ``studies`` (NIfTI
volumes and DICOM series in, masks in the scanner's grid, DICOM SEG and tumor volume out),
``review`` (error queue, TTA uncertainty, Grad-CAM, review store, mask corrections), ``evaluation`` (figures,
bootstrap CIs, operating point, calibration, speed), ``experiments`` (the ablation, fine-tune reports),
``reports`` (overlays, figures, exports, model card) and ``app`` (Streamlit glue). ``settings`` says where
models and data are; ``cli`` is the ``brainseg`` command.
"""

__version__ = "0.1.0"
