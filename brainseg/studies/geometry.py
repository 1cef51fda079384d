"""Voxel geometry: reorienting a volume to the training slices' layout and resampling its slices in-plane.

The Kaggle slices are axial, rows running anterior to posterior, columns from the patient's right to left
(radiological display) and slices numbered inferior to superior. In nibabel's terms a stack of them, with voxel
axes (column, row, slice), has orientation codes ``L P S``: any orthogonal volume reaches it by permuting and
flipping voxel axes (nibabel's orientation tools), which is exact and exactly reversible. In-plane, slices are
padded to a square field of view and resized to the models' 256x256 grid; masks come back the reverse way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt2axcodes,
    ornt_transform,
)

from brainseg.errors import DataError

TRAINING_AXCODES = ("L", "P", "S")  # voxel axes (column, row, slice) of a stack of training slices
MODEL_GRID = 256  # the training slices' size; the cascade resizes to each model's own input from there
OBLIQUE_TOLERANCE_DEG = 25.0  # AC-PC-tilted axials pass; near-45-degree obliques have no clear nearest axis
SHEAR_TOLERANCE_DEG = 1.0
MAX_INPLANE_ANISOTROPY = 2.0  # after reslicing, a 1 x 5 mm "slice" is no longer a usable axial image


class StudyError(DataError):
    """A study (NIfTI file or DICOM series) that cannot be used as it is; the message names the file."""


def check_orthogonal(affine: np.ndarray, name: str) -> None:
    """Refuse sheared grids and acquisitions oblique beyond ``OBLIQUE_TOLERANCE_DEG`` to the scanner axes."""
    columns = np.asarray(affine, float)[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms <= 0) or not np.all(np.isfinite(columns)):
        raise StudyError(f"{name}: the voxel-to-world matrix is degenerate (a zero or non-finite voxel size)")
    directions = columns / norms
    gram = np.abs(directions.T @ directions - np.eye(3))
    shear = float(np.degrees(np.arcsin(min(1.0, gram.max()))))
    if shear > SHEAR_TOLERANCE_DEG:
        raise StudyError(f"{name}: voxel axes are not perpendicular ({shear:.1f} degrees off; sheared or "
                         "gantry-tilted grid): resample it to an orthogonal grid first")
    oblique = float(np.degrees(np.arccos(np.clip(np.abs(directions).max(axis=0).min(), 0.0, 1.0))))
    if oblique > OBLIQUE_TOLERANCE_DEG:
        raise StudyError(f"{name}: acquisition is oblique by {oblique:.0f} degrees (more than "
                         f"{OBLIQUE_TOLERANCE_DEG:.0f}): it cannot be resliced to axial by reordering voxels; "
                         "reslice it to an axial grid first")


@dataclass(frozen=True)
class Reorientation:
    """The voxel permutation and flips from a volume's own axes to the training layout, and back."""

    native_ornt: np.ndarray
    native_shape: tuple[int, int, int]

    @classmethod
    def of(cls, affine: np.ndarray, shape: tuple[int, ...]) -> Reorientation:
        """From a volume's affine (its nearest scanner axes) and shape."""
        return cls(io_orientation(affine), tuple(int(s) for s in shape[:3]))

    @property
    def _forward(self) -> np.ndarray:
        return ornt_transform(self.native_ornt, axcodes2ornt(TRAINING_AXCODES))

    def to_training(self, data: np.ndarray) -> np.ndarray:
        """(native voxel axes) -> (column, row, slice) in the training layout."""
        return apply_orientation(data, self._forward)

    def to_native(self, data: np.ndarray) -> np.ndarray:
        """The exact inverse of ``to_training``."""
        return apply_orientation(data, ornt_transform(axcodes2ornt(TRAINING_AXCODES), self.native_ornt))

    def training_affine(self, affine: np.ndarray) -> np.ndarray:
        """The affine of the reoriented array (same world positions, new voxel order)."""
        return np.asarray(affine, float) @ inv_ornt_aff(self._forward, self.native_shape)

    def native_axcodes(self) -> str:
        """The native voxel axes as nibabel orientation codes, e.g. ``RAS`` or ``LPS``."""
        return "".join(ornt2axcodes(self.native_ornt))

    def native_slice_index(self, slice_index: np.ndarray) -> tuple[int, np.ndarray]:
        """For training-layout slice numbers: which native voxel axis they run along, and the native index."""
        forward = self._forward
        axis = int(np.flatnonzero(forward[:, 0] == 2)[0])
        n = self.native_shape[axis]
        index = np.asarray(slice_index)
        return axis, (n - 1 - index) if forward[axis, 1] < 0 else index


@dataclass(frozen=True)
class InPlaneGrid:
    """Slices of ``height`` x ``width`` voxels (``row_mm`` x ``col_mm``) <-> the models' square grid.

    The slice is padded (zeros, centred) to a square field of view in millimetres, then resized to ``size``;
    a 256x256 slice with square pixels is passed through untouched, so the Kaggle slices go in unchanged.
    """

    height: int
    width: int
    row_mm: float
    col_mm: float
    size: int = MODEL_GRID

    @property
    def padded(self) -> tuple[int, int]:
        fov = max(self.height * self.row_mm, self.width * self.col_mm)
        return max(self.height, round(fov / self.row_mm)), max(self.width, round(fov / self.col_mm))

    @property
    def offsets(self) -> tuple[int, int]:
        padded_h, padded_w = self.padded
        return (padded_h - self.height) // 2, (padded_w - self.width) // 2

    def to_model(self, slices: np.ndarray) -> np.ndarray:
        """(N, height, width) float -> (N, size, size) float32; area interpolation when shrinking."""
        (padded_h, padded_w), (top, left) = self.padded, self.offsets
        padded = np.zeros((len(slices), padded_h, padded_w), np.float32)
        padded[:, top : top + self.height, left : left + self.width] = slices
        if (padded_h, padded_w) == (self.size, self.size):
            return padded
        shrinking = padded_h > self.size and padded_w > self.size
        method = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        return np.stack([cv2.resize(s, (self.size, self.size), interpolation=method) for s in padded])

    def to_native(self, maps: np.ndarray) -> np.ndarray:
        """(N, size, size) float -> (N, height, width) float32, bilinear, padding cropped off."""
        (padded_h, padded_w), (top, left) = self.padded, self.offsets
        maps = np.asarray(maps, np.float32)
        if (padded_h, padded_w) != (self.size, self.size):
            maps = np.stack([cv2.resize(m, (padded_w, padded_h), interpolation=cv2.INTER_LINEAR) for m in maps])
        return maps[:, top : top + self.height, left : left + self.width]

    def mask_to_native(self, masks: np.ndarray) -> np.ndarray:
        """(N, size, size) bool -> (N, height, width) bool: a native voxel is in when it is over half covered."""
        return self.to_native(np.asarray(masks, np.float32)) >= 0.5
