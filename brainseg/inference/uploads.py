"""Turning user files (uploads, `brainseg predict` inputs) into dataset-like slices, with notes.

The models expect what the dataset holds: 256x256 uint8 RGB slices (pre-contrast, FLAIR,
post-contrast). Other inputs are converted when the conversion is well defined (and a note says
what was done) and refused with a specific message otherwise.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import cv2
import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from brainseg.core.data import MASK_SHAPE, SLICE_SHAPE
from brainseg.errors import DataError

ALLOWED_FORMATS = {"TIFF": (".tif", ".tiff"), "PNG": (".png",), "JPEG": (".jpg", ".jpeg")}
ALLOWED_SUFFIXES = tuple(s for suffixes in ALLOWED_FORMATS.values() for s in suffixes)
MAX_PIXELS = 4096 * 4096  # larger images are refused before decoding (decompression-bomb guard)
MAX_BYTES = 50 * 1024 * 1024


@dataclass
class SliceInput:
    """A slice ready for the cascade, its optional mask, and what was done to get it there."""

    name: str
    image: np.ndarray  # (256, 256, 3) uint8
    mask: np.ndarray | None = None  # (256, 256) bool
    notes: list[str] = field(default_factory=list)
    original_size: tuple[int, int] = (256, 256)  # (width, height) as uploaded


def safe_name(name: str) -> str:
    """The file's own name without any folder part (uploads may carry '../../x.tif')."""
    cleaned = PurePath(name.replace("\\", "/")).name
    return cleaned.encode("utf-8", "replace").decode("utf-8") or "unnamed"


def _open_checked(data: bytes, name: str) -> Image.Image:
    if len(data) == 0:
        raise DataError(f"{name}: file is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise DataError(f"{name}: file is {len(data) / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB limit")
    suffix = Path(name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise DataError(f"{name}: unsupported file type '{suffix or 'none'}' (use .tif, .tiff, .png or .jpg)")
    try:
        image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except UnidentifiedImageError as err:
        sniffed = _sniff_format(data)
        if sniffed:
            raise DataError(f"{name}: truncated or corrupt {sniffed} file (its header cannot be read)") from err
        raise DataError(f"{name}: not a TIFF, PNG or JPEG image (the content does not match its name)") from err
    except Image.DecompressionBombError as err:
        raise DataError(f"{name}: declares an enormous image (possible decompression bomb); refused") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{name}: unreadable image ({err})") from err
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(f"{name}: {width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit")
    if min(width, height) < 16:
        raise DataError(f"{name}: {width}x{height} pixels is too small to be an MRI slice")
    if getattr(image, "n_frames", 1) > 1:
        raise DataError(f"{name}: holds {image.n_frames} pages/frames; upload one slice per file")
    samples = getattr(image, "tag_v2", {}).get(277) if image.format == "TIFF" else None  # SamplesPerPixel
    if samples is not None and samples != len(image.getbands()):
        raise DataError(f"{name}: {samples}-channel image; expected 1 (FLAIR) or 3 (pre-contrast, FLAIR, "
                        "post-contrast) channels")
    return image


_MAGIC = {b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def _sniff_format(data: bytes) -> str | None:
    """The format a file's first bytes claim, if they claim one of ours."""
    return next((fmt for magic, fmt in _MAGIC.items() if data.startswith(magic)), None)


def _decode(image: Image.Image, name: str) -> np.ndarray:
    try:
        frame = next(ImageSequence.Iterator(image))
        frame.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{name}: truncated or corrupt image data ({err})") from err
    return frame


def read_user_image(data: bytes, name: str) -> tuple[np.ndarray, list[str], tuple[int, int]]:
    """Decode an uploaded slice to (256, 256, 3) uint8, notes on any conversion, and its (width, height)."""
    name = safe_name(name)
    image = _decode(_open_checked(data, name), name)
    array, notes = _to_slice(image, name)
    return array, notes, image.size


def _to_slice(image: Image.Image, name: str) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if not np.isfinite(array).all():
            raise DataError(f"{name}: contains non-finite pixel values (NaN or infinity)")
        low, high = array.min(), array.max()
        array = np.zeros_like(array) if high == low else (array - low) / (high - low) * 255.0
        array = np.repeat(np.round(array).astype(np.uint8)[..., None], 3, axis=2)
        notes.append(f"{mode} image rescaled to 0-255 and read as FLAIR in all three channels")
    elif mode in ("L", "LA", "1"):
        array = np.repeat(np.asarray(image.convert("L"))[..., None], 3, axis=2)
        notes.append("grayscale image read as FLAIR and copied to all three channels")
    elif mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "PA"):
        if mode != "RGB":
            notes.append(f"{mode} image converted to RGB" + (" (transparency dropped)" if "A" in mode else ""))
        array = np.asarray(image.convert("RGB"))
    else:
        raise DataError(f"{name}: unsupported pixel format '{mode}'")
    if array.shape[:2] != SLICE_SHAPE[:2]:
        notes.append(f"resized from {array.shape[1]}x{array.shape[0]} to 256x256")
        interpolation = cv2.INTER_AREA if array.shape[0] > 256 else cv2.INTER_LINEAR
        array = cv2.resize(array, (256, 256), interpolation=interpolation)
    return np.ascontiguousarray(array, dtype=np.uint8), notes


def read_user_mask(data: bytes, name: str, image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded mask to (256, 256) bool (pixels over half the range are tumor).

    ``image_size`` (width, height) is its slice's size as uploaded; a mask of another size is refused.
    """
    name = safe_name(name)
    image = _decode(_open_checked(data, name), name)
    if image_size is not None and image.size != tuple(image_size):
        raise DataError(f"{name}: mask is {image.size[0]}x{image.size[1]} but its slice is "
                        f"{image_size[0]}x{image_size[1]}")
    notes: list[str] = []
    array = np.asarray(image.convert("L") if image.mode not in ("L", "I;16", "I", "F") else image)
    values = np.unique(array)
    top = 255 if array.dtype == np.uint8 else max(1.0, float(array.max()))
    if not set(values.tolist()) <= {0, top}:
        notes.append(f"mask has {len(values)} distinct values; pixels above half of {top:g} taken as tumor")
    mask = array > top / 2
    if mask.shape != MASK_SHAPE:
        notes.append(f"mask resized from {mask.shape[1]}x{mask.shape[0]} to 256x256")
        mask = cv2.resize(mask.astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask, notes


def is_mask_name(name: str) -> bool:
    return Path(safe_name(name)).stem.lower().endswith("_mask")


def pair_uploads(files: list[tuple[str, bytes]]) -> tuple[list[SliceInput], list[tuple[str, str]]]:
    """Decode uploaded files and match each ``<x>_mask.<ext>`` to ``<x>.<ext>``.

    Returns the usable slices (in upload order) and (file name, message) for each file refused; one
    bad file never stops the others.
    """
    errors: list[tuple[str, str]] = []
    images: dict[str, SliceInput] = {}
    masks: dict[str, tuple[str, bytes]] = {}
    for raw_name, data in files:
        name = safe_name(raw_name)
        stem = Path(name).stem
        if is_mask_name(name):
            key = stem[: -len("_mask")]
            if key in masks:
                errors.append((name, "a mask for this slice was already uploaded; this one is ignored"))
            else:
                masks[key] = (name, data)
            continue
        if stem in images:
            errors.append((name, "another file of the same name was already uploaded; this one is ignored"))
            continue
        try:
            array, notes, size = read_user_image(data, name)
        except DataError as err:
            errors.append((name, str(err)))
            continue
        images[stem] = SliceInput(name, array, None, notes, size)
    for key, (mask_name, data) in masks.items():
        if key not in images:
            errors.append((mask_name, "mask without its image (upload the slice with the same name, minus '_mask')"))
            continue
        try:
            mask, notes = read_user_mask(data, mask_name, images[key].original_size)
        except DataError as err:
            errors.append((mask_name, str(err)))
            continue
        images[key].mask = mask
        images[key].notes.extend(notes)
    return list(images.values()), errors


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A 0/255 8-bit PNG of a boolean mask (the dataset's mask convention)."""
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_mask_tiff(mask: np.ndarray) -> bytes:
    """A 0/255 8-bit TIFF of a boolean mask, like the dataset's ``_mask.tif`` files."""
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="TIFF")
    return buffer.getvalue()
