"""A study (FLAIR, optional pre- and post-contrast) -> the cascade's slices -> a mask in the FLAIR's own grid.

The training slices are 256x256 uint8 RGB with channels pre-contrast, FLAIR, post-contrast (the dataset's
README), each sequence scaled per volume into 0..255. Their statistics (minimum 0, one or two voxels at or just
under 255 per sequence and patient) are those of min-max scaling, so 12/16-bit DICOM, rescaled values and float
NIfTI are min-max scaled per volume; volumes stored as 8-bit without rescaling are taken as already scaled.
The dataset put FLAIR in place of a missing sequence; a study without pre- or post-contrast does the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainseg.inference.cascade import Cascade, CascadeResult
from brainseg.studies.geometry import MAX_INPLANE_ANISOTROPY, InPlaneGrid, Reorientation, StudyError, check_orthogonal
from brainseg.studies.volumes import Volume, read_volume

CHANNELS = ("pre", "flair", "post")  # channel order of the training slices
SEQUENCE_NAMES = {"pre": "pre-contrast", "flair": "FLAIR", "post": "post-contrast"}
MIN_OVERLAP = 0.5  # share of the FLAIR volume another sequence must cover
SAME_GRID_MM = 1e-3  # affines closer than this (mm) are the same grid


def to_training_range(volume: Volume) -> np.ndarray:
    """Voxel values scaled into the training slices' 0..255 (float64; 8-bit volumes pass unchanged)."""
    if volume.eight_bit:
        return volume.data.astype(np.float64)
    low, high = float(volume.data.min()), float(volume.data.max())
    if high <= low:
        raise StudyError(f"{volume.path}: every voxel has the same value ({low:g}); nothing to segment")
    return (volume.data.astype(np.float64) - low) * (255.0 / (high - low))


def _resample(values: np.ndarray, volume: Volume, flair: Volume, order: int) -> np.ndarray:
    """``values`` (on ``volume``'s grid) sampled at the FLAIR grid's voxel centres through the two affines.

    When the grids share their voxel centres (another axis order or direction of the same grid) the voxel-to-voxel
    map is rounded to integers, so the values are copied exactly instead of interpolated at 1e-12 offsets.
    """
    from scipy import ndimage

    mapping = np.linalg.solve(volume.affine, flair.affine)  # FLAIR voxel -> other voxel
    if np.allclose(mapping, np.rint(mapping), atol=1e-6):
        mapping = np.rint(mapping)
    return ndimage.affine_transform(values, mapping[:3, :3], mapping[:3, 3], output_shape=flair.shape,
                                    order=order, mode="constant", cval=0.0)


def _on_flair_grid(scaled: np.ndarray, volume: Volume, flair: Volume, role: str) -> tuple[np.ndarray, str | None]:
    """``scaled`` (another sequence's values) on the FLAIR grid, and a warning when it had to be resampled."""
    if volume.shape == flair.shape and np.abs(volume.affine - flair.affine).max() < SAME_GRID_MM:
        return scaled, None
    overlap = float(_resample(np.ones(volume.shape, np.float32), volume, flair, order=0).mean())
    name = SEQUENCE_NAMES[role]
    if overlap < MIN_OVERLAP:
        raise StudyError(f"{volume.path}: the {name} volume covers {100 * overlap:.0f}% of the FLAIR volume "
                         f"(less than {100 * MIN_OVERLAP:.0f}%): the sequences do not overlap; are they from "
                         "the same study?")
    resampled = _resample(scaled, volume, flair, order=1)
    note = (f"{name} is on another grid than FLAIR: resampled onto the FLAIR grid through the files' affines "
            "(scanner coordinates; no registration was done, so patient motion between sequences is not corrected)")
    if overlap < 0.99:
        note += f"; it covers {100 * overlap:.0f}% of the FLAIR volume, the rest is black"
    return resampled, note


@dataclass
class Study:
    """A study as the cascade's slices (``images``: (N, 256, 256, 3) uint8, inferior to superior) and the way back.

    ``sequences`` says what fills each channel; ``warnings`` what a reader must know (missing or resampled
    sequences). Masks on the models' grid map back into the FLAIR input's voxel grid with ``to_native``.
    """

    images: np.ndarray
    flair: Volume
    reorientation: Reorientation
    grid: InPlaneGrid
    sequences: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def to_native(self, masks: np.ndarray) -> np.ndarray:
        """(N, 256, 256) bool masks -> uint8 mask in the FLAIR input's voxel grid (same shape, same affine)."""
        stacked = self.grid.mask_to_native(masks)  # (slice, row, column), training layout, native in-plane size
        return self.reorientation.to_native(stacked.transpose(2, 1, 0)).astype(np.uint8)

    def native_slice_indices(self) -> tuple[int, np.ndarray]:
        """The FLAIR voxel axis the slices run along, and each slice's index on it."""
        return self.reorientation.native_slice_index(np.arange(len(self)))


def assemble_study(flair: Volume, pre: Volume | None = None, post: Volume | None = None) -> Study:
    """Scale, align, reorient and resample the sequences into the cascade's 3-channel slices."""
    given = {"pre": pre, "flair": flair, "post": post}
    reorientation = Reorientation.of(flair.affine, flair.shape)
    col_mm, row_mm, _ = np.linalg.norm(reorientation.training_affine(flair.affine)[:3, :3], axis=0)
    if max(col_mm, row_mm) / min(col_mm, row_mm) > MAX_INPLANE_ANISOTROPY:
        raise StudyError(f"{flair.path}: axial slices would have {row_mm:.2f} x {col_mm:.2f} mm pixels once "
                         f"resliced (more than {MAX_INPLANE_ANISOTROPY:g}:1); a thick-slice sagittal or coronal "
                         "acquisition cannot be resliced to usable axial images")
    flair_scaled = to_training_range(flair)
    channels, sequences, warnings = [], {}, []
    for role in CHANNELS:
        volume = given[role]
        if volume is None:
            channels.append(flair_scaled)
            sequences[role] = "FLAIR copy (sequence not given)"
            warnings.append(f"No {SEQUENCE_NAMES[role]} sequence given: FLAIR is used in its place, as the training "
                            "dataset did for its patients without it. Accuracy on such input has not been measured.")
            continue
        if role == "flair":
            channels.append(flair_scaled)
            sequences[role] = "given"
            continue
        check_orthogonal(volume.affine, str(volume.path))
        scaled, note = _on_flair_grid(to_training_range(volume), volume, flair, role)
        channels.append(scaled)
        sequences[role] = "given" if note is None else "resampled onto the FLAIR grid"
        if note:
            warnings.append(note)
    stacked = [reorientation.to_training(c).transpose(2, 1, 0) for c in channels]  # (slice, row, column)
    grid = InPlaneGrid(stacked[0].shape[1], stacked[0].shape[2], float(row_mm), float(col_mm))
    if (grid.height, grid.width) != (grid.size, grid.size) or abs(row_mm - col_mm) > 1e-6:
        warnings.append(f"Slices of {grid.height}x{grid.width} pixels ({row_mm:.2f} x {col_mm:.2f} mm) were padded "
                        f"to a square field of view and resampled to {grid.size}x{grid.size} for the models; the "
                        "mask is resampled back.")
    images = np.stack([np.clip(np.rint(grid.to_model(c)), 0, 255).astype(np.uint8) for c in stacked], axis=-1)
    return Study(images, flair, reorientation, grid, sequences, warnings)


def load_study(flair: str | Path, pre: str | Path | None = None, post: str | Path | None = None,
               progress: bool = False) -> Study:
    """Read the sequences (NIfTI files or DICOM series folders) and assemble them."""
    volumes = {role: read_volume(path, progress) if path is not None else None
               for role, path in (("flair", flair), ("pre", pre), ("post", post))}
    return assemble_study(volumes["flair"], volumes["pre"], volumes["post"])


@dataclass
class StudyPrediction:
    """The cascade's stored outputs for a study; a threshold re-gates them without running a model."""

    study: Study
    result: CascadeResult
    threshold: float

    def native_mask(self, threshold: float | None = None,
                    corrections: Mapping[int, np.ndarray] | None = None) -> np.ndarray:
        """The cascade's mask in the FLAIR input's voxel grid (uint8 0/1).

        ``corrections``: reviewers' masks (models' grid) by slice index, drawn instead of the AI's on those slices.
        """
        masks = self.result.masks(self.threshold if threshold is None else threshold)
        if corrections:
            masks = masks.copy()
            for index, mask in corrections.items():
                masks[index] = mask
        return self.study.to_native(masks)

    def tumor_volume_ml(self, threshold: float | None = None,
                        corrections: Mapping[int, np.ndarray] | None = None) -> float:
        """Mask voxels x one voxel's volume, counted in the FLAIR's own grid (its spacing, not the models')."""
        return int(self.native_mask(threshold, corrections).sum()) * self.study.flair.voxel_ml

    def slice_table(self, threshold: float | None = None) -> list[dict]:
        """Per slice (inferior to superior): score, gate, decision, and mask voxels in the FLAIR grid."""
        threshold = self.threshold if threshold is None else threshold
        masks = self.result.masks(threshold)
        voxels = self.study.grid.mask_to_native(masks).sum(axis=(1, 2))
        _, native = self.study.native_slice_indices()
        gate, called = self.result.gate(threshold), self.result.decisions(threshold)
        return [{"slice": k, "flair_voxel_index": int(native[k]),
                 "slice_score": round(float(self.result.probabilities[k]), 6),
                 "classifier_probability": round(float(self.result.classifier_probabilities[k]), 6),
                 "passed_gate": bool(gate[k]), "tumor_called": bool(called[k]), "tumor_voxels": int(voxels[k])}
                for k in range(len(self.study))]


def predict_study(cascade: Cascade, study: Study, threshold: float | None = None,
                  progress: Callable[[int, int], None] | None = None) -> StudyPrediction:
    """Run the cascade once on every slice of the study (``progress(done, total)`` after each batch).

    The study's slices are one volume in order, so a segmenter reading neighbouring slices gets them.
    """
    threshold = cascade.default_threshold if threshold is None else float(threshold)
    result = cascade.predict(study.images, np.arange(len(study)), progress=progress)
    return StudyPrediction(study, result, threshold)
