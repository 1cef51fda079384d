"""Studies: whole NIfTI volumes and DICOM series in, masks back in the scanner's own geometry.

``volumes`` reads a sequence (NIfTI file or one DICOM series folder) into a ``Volume`` (voxels + RAS affine),
``geometry`` reorients it to the slices the models were trained on (axial, rows anterior to posterior,
columns patient right to left, slices inferior to superior) and resamples in-plane to the models' grid,
``study`` assembles FLAIR (+ pre/post) into cascade slices, runs the cascade and maps the mask back exactly,
``outputs`` writes the NIfTI mask, DICOM SEG and JSON summary, ``archive`` opens uploaded zips safely.
"""
