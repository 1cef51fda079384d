"""Turning user files (uploads, `brainseg predict` inputs) into dataset-like slices, with notes.

The models expect what the dataset holds: 256x256 uint8 RGB slices (pre-contrast, FLAIR,
post-contrast). Other inputs are converted when the conversion is well defined (and a note says
what was done) and refused with a specific message otherwise.

TIFFs are read with tifffile (any bit depth, float, 1 to 4 channels, strips or tiles); the few TIFF
codecs tifffile cannot decode without the optional imagecodecs package (LZW, JPEG, ...) and colour
models other than gray/RGB go through Pillow, which reads those only at 8 bits or as one channel.
PNG and JPEG are read with Pillow (16-bit colour PNGs with OpenCV, which keeps all 16 bits).
"""

from __future__ import annotations

import io
import lzma
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import cv2
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from brainseg.core.data import SLICE_SHAPE, mask_pixels_to_bool
from brainseg.core.preprocess import grey_air_levels
from brainseg.errors import DataError

RESIZED = "resized from "  # how a note says a slice (or mask) was brought to the model grid (results.py reads it)

ALLOWED_FORMATS = {"TIFF": (".tif", ".tiff"), "PNG": (".png",), "JPEG": (".jpg", ".jpeg")}
ALLOWED_SUFFIXES = tuple(s for suffixes in ALLOWED_FORMATS.values() for s in suffixes)
MAX_PIXELS = 4096 * 4096  # larger images are refused from their header, before decoding
BOMB_PIXELS = 16 * MAX_PIXELS  # a declared size beyond this is called a possible decompression bomb
MAX_BYTES = 50 * 1024 * 1024
MIN_SIDE = 16
SIDE = SLICE_SHAPE[0]

GRAYSCALE_NOTE = "grayscale image read as FLAIR and copied to all three channels"
GRAYSCALE_OUT_OF_DISTRIBUTION = ("grayscale image: read as FLAIR and copied to the pre- and post-contrast channels; "
                                 "the models were trained on three sequences")
CHANNEL_NAMES = ("pre-contrast", "FLAIR", "post-contrast")  # the dataset's R, G, B
CHANNELS_EXPECTED = "expected 1 (FLAIR) or 3 (pre-contrast, FLAIR, post-contrast) channels"


@dataclass
class SliceInput:
    """A slice ready for the cascade, its optional mask, and what was done to get it there."""

    name: str
    image: np.ndarray  # (256, 256, 3) uint8
    mask: np.ndarray | None = None  # (256, 256) bool
    notes: list[str] = field(default_factory=list)
    original_size: tuple[int, int] = (256, 256)  # (width, height) as uploaded, turned upright
    # Why the slice is unlike the training data (its outputs are of unknown validity); None when dataset-like.
    out_of_distribution: str | None = None
    # What `_fit` did, so masks can go back to the uploaded grid (`mask_on_upload_grid`): the square's side
    # before the resize to 256, and the zero rows above and columns left of the picture in that square.
    padded_side: int = SIDE
    padding: tuple[int, int] = (0, 0)  # (top, left)


def safe_name(name: str) -> str:
    """The file's own name without any folder part (uploads may carry '../../x.tif')."""
    cleaned = PurePath(name.replace("\\", "/")).name
    return cleaned.encode("utf-8", "replace").decode("utf-8") or "unnamed"


# ---------------------------------------------------------------------------------------------------
# Decoding: checks on the file and its header, then pixels as stored ((H, W) or (H, W, 3), any dtype)
# ---------------------------------------------------------------------------------------------------

_MAGIC = {b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF",  # classic, BigTIFF
          b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def _sniff_format(data: bytes) -> str | None:
    """The format a file's first bytes claim, if they claim one of ours."""
    return next((fmt for magic, fmt in _MAGIC.items() if data.startswith(magic)), None)


def _decode(data: bytes, name: str) -> tuple[np.ndarray, list[str]]:
    """Checked pixels as stored ((H, W) or (H, W, 3)), with notes on format conversions (alpha, palette...)."""
    if len(data) == 0:
        raise DataError(f"{name}: file is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise DataError(f"{name}: file is {len(data) / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB limit")
    suffix = Path(name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise DataError(f"{name}: unsupported file type '{suffix or 'none'}' (use .tif, .tiff, .png or .jpg)")
    fmt = _sniff_format(data)
    if fmt is None:
        raise DataError(f"{name}: not a TIFF, PNG or JPEG image (the content does not match its name)")
    return _read_tiff(data, name) if fmt == "TIFF" else _read_with_pillow(data, name, fmt)


# The EXIF/TIFF Orientation tag (274): how the stored rows and columns map onto the picture as meant to be seen.
_ORIENTATIONS = {
    2: ("mirrored left-right", lambda a: a[:, ::-1]),
    3: ("rotated 180 degrees", lambda a: a[::-1, ::-1]),
    4: ("mirrored top-bottom", lambda a: a[::-1]),
    5: ("transposed", lambda a: a.swapaxes(0, 1)),
    6: ("rotated 90 degrees clockwise", lambda a: np.rot90(a, -1)),
    7: ("transposed across the other diagonal", lambda a: np.rot90(a, 2).swapaxes(0, 1)),
    8: ("rotated 90 degrees counter-clockwise", lambda a: np.rot90(a, 1)),
}


def _orientation_tag(read_tag: Callable[[], object]) -> int:
    """The Orientation tag that ``read_tag`` returns from the header already parsed (1, stored upright, when
    absent or unreadable)."""
    try:
        tag = read_tag()
        return int(tag) if tag is not None else 1
    except Exception:  # a tag this damaged was not written by a viewer: take the pixels as stored
        return 1


def _upright(pixels: np.ndarray, notes: list[str], orientation: int,
             already_turned: bool = False) -> tuple[np.ndarray, list[str]]:
    """The pixels as viewers show them: a slice and its mask both follow their files' Orientation tags, so the
    returned mask lies on the hemisphere the user sees. ``already_turned``: the decoder applied the tag."""
    if orientation not in _ORIENTATIONS:
        return pixels, notes
    how, turn = _ORIENTATIONS[orientation]
    if not already_turned:
        pixels = np.ascontiguousarray(turn(pixels))
    return pixels, [*notes, f"stored {how} (its Orientation tag): turned upright"]


def _check_size(width: int, height: int, name: str) -> None:
    """Refuse from the declared size alone: nothing is decoded for a refused image."""
    if width * height > BOMB_PIXELS:
        raise DataError(f"{name}: declares a {width}x{height}-pixel image (possible decompression bomb); refused")
    if width * height > MAX_PIXELS:
        raise DataError(f"{name}: {width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit")
    if min(width, height) < MIN_SIDE:
        raise DataError(f"{name}: {width}x{height} pixels is too small to be an MRI slice")


def _refuse_pages(count: int, name: str) -> None:
    if count > 1:
        raise DataError(f"{name}: holds {count} pages/frames; upload one slice per file")


# tifffile reports a malformed file with assorted exception types, depending on where parsing stops.
_TIFF_ERRORS = (ValueError, OSError, EOFError, IndexError, KeyError, TypeError, OverflowError, ZeroDivisionError,
                struct.error, zlib.error, lzma.LZMAError)
_PHOTOMETRIC = tifffile.PHOTOMETRIC
_ALPHA = {tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA}
_ZLIB = {8, 32946}  # ADOBE_DEFLATE, DEFLATE
_LZMA, _PACKBITS = 34925, 32773
# Codecs tifffile decodes with the standard library; the rest need imagecodecs, so Pillow decodes them.
_TIFFFILE_CODECS = {1, _PACKBITS, _LZMA, *_ZLIB}


def _read_tiff(data: bytes, name: str) -> tuple[np.ndarray, list[str]]:
    corrupt_header = f"{name}: truncated or corrupt TIFF file (its header cannot be read)"
    if not _first_ifd_in_file(data):  # the usual cut file; checked here so tifffile logs no warning for it
        raise DataError(corrupt_header)
    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except _TIFF_ERRORS as err:
        raise DataError(corrupt_header) from err
    with tif:
        try:
            count = len(tif.pages)
            page = tif.pages[0] if count else None
        except _TIFF_ERRORS as err:
            raise DataError(corrupt_header) from err
        if not isinstance(page, tifffile.TiffPage):
            raise DataError(corrupt_header)
        _refuse_pages(count, name)
        _check_size(page.imagewidth, page.imagelength, name)
        if page.imagedepth > 1:
            raise DataError(f"{name}: a 3-D volume of {page.imagedepth} planes; upload one 2-D slice per file")
        if page.is_tiled and page.tilewidth * page.tilelength > MAX_PIXELS:
            raise DataError(f"{name}: declares {page.tilewidth}x{page.tilelength}-pixel tiles, over the "
                            f"{MAX_PIXELS:,}-pixel limit")
        try:  # the header's fields themselves may be malformed (zero tile sizes, uneven sample depths)
            keep, notes = _tiff_channels(page, name)
            if keep == 0:
                return _read_with_pillow(data, name, "TIFF")
            _check_segments(page, data, name)
        except DataError:
            raise
        except _TIFF_ERRORS as err:
            raise DataError(corrupt_header) from err
        try:
            array = page.asarray(maxworkers=1)
        except (*_TIFF_ERRORS, ImportError, NotImplementedError) as err:
            raise DataError(f"{name}: truncated or corrupt TIFF image data ({err})") from err
        # (separate samples, depth, length, width, contiguous samples) -> (length, width, samples)
        array = np.moveaxis(array.reshape(page.shaped)[:, 0], 0, -1).reshape(page.imagelength, page.imagewidth, -1)
        array = array[..., 0] if keep == 1 else array[..., :keep]
        if page.photometric == _PHOTOMETRIC.MINISWHITE:
            array = _invert(array)
            notes.append("MinIsWhite image inverted (the file stores 0 as white)")
        orientation = _orientation_tag(lambda: getattr(page.tags.get(274), "value", None))
    return _upright(array, notes, orientation)


def _first_ifd_in_file(data: bytes) -> bool:
    """Whether the header's offset to the first image directory points inside the file."""
    order = "<" if data.startswith(b"II") else ">"
    classic = data[2:4] in (b"*\x00", b"\x00*")
    end = 8 if classic else 16
    if len(data) < end:
        return False
    offset = struct.unpack(order + ("I" if classic else "Q"), data[end - (4 if classic else 8): end])[0]
    return end <= offset < len(data) - 2


def _tiff_channels(page: tifffile.TiffPage, name: str) -> tuple[int, list[str]]:
    """How many leading samples to keep (0: let Pillow decode the file) and notes, from the header only."""
    samples, bits = page.samplesperpixel, page.bitspersample
    photometric = page.photometric
    keep, notes = 0, []
    if photometric in (_PHOTOMETRIC.MINISBLACK, _PHOTOMETRIC.MINISWHITE, _PHOTOMETRIC.RGB):
        keep, notes = _gray_or_rgb_channels(page, name)  # refusals first, whichever library decodes
    decodable = page.compression in _TIFFFILE_CODECS and page.dtype is not None
    if decodable and page.predictor != 1:
        try:
            tifffile.TIFF.UNPREDICTORS[page.predictor]
        except KeyError:  # the floating-point predictor needs imagecodecs
            decodable = False
    if keep and decodable:
        return keep, notes
    # Pillow reads palette, CMYK, YCbCr and LZW/JPEG data, but narrows deep colour to 8 bits silently.
    if samples == 1 or bits <= 8:
        return 0, []
    compression = getattr(page.compression, "name", page.compression)
    kind = getattr(photometric, "name", photometric)
    raise DataError(f"{name}: cannot decode a {kind} TIFF of {samples} channels of {bits}-bit samples with "
                    f"{compression} compression; save it uncompressed or with Deflate (zlib) compression")


def _gray_or_rgb_channels(page: tifffile.TiffPage, name: str) -> tuple[int, list[str]]:
    samples = page.samplesperpixel
    extras = tuple(page.extrasamples)
    alpha = bool(extras) and extras[0] in _ALPHA
    base = 3 if page.photometric == _PHOTOMETRIC.RGB else 1
    if samples == base or (base == 1 and samples == 3):  # three gray samples: the three sequences
        return samples, []
    if samples == base + 1 and alpha:
        return base, ["RGBA image converted to RGB (transparency dropped)" if base == 3 else
                      "LA image converted to grayscale (transparency dropped)"]
    if base == 3 and samples == 4:
        return 3, ["RGBX image converted to RGB (its 4th channel dropped)"]
    raise DataError(f"{name}: {samples}-channel image; {CHANNELS_EXPECTED}")


def _check_segments(page: tifffile.TiffPage, data: bytes, name: str) -> None:
    """Every strip/tile lies inside the file and decompresses to at most about its declared size.

    tifffile decompresses Deflate, LZMA and PackBits without an output bound, so a small file could
    otherwise expand to gigabytes whatever its header declares; this pass stops at the bound.
    """
    offsets, counts = page.dataoffsets, page.databytecounts
    if len(offsets) != len(counts) or len(offsets) < math.prod(page.chunked):
        raise DataError(f"{name}: truncated or corrupt TIFF file (its strip/tile table is incomplete)")
    if any(count == 0 for count in counts):
        raise DataError(f"{name}: truncated or corrupt TIFF file (a strip or tile of its pixel data is missing)")
    if any(offset + count > len(data) for offset, count in zip(offsets, counts, strict=True)):
        raise DataError(f"{name}: truncated or corrupt TIFF file (its pixel data runs past the end of the file)")
    if page.compression == 1:
        return
    limit = 2 * math.prod(page.chunks) * max(1, math.ceil(page.bitspersample / 8)) + 65536
    for offset, count in zip(offsets, counts, strict=True):
        segment = data[offset: offset + count]
        try:
            if page.compression in _ZLIB:
                size = len(zlib.decompressobj().decompress(segment, limit + 1))
            elif page.compression == _LZMA:
                size = len(lzma.LZMADecompressor().decompress(segment, max_length=limit + 1))
            else:
                size = _packbits_size(segment, limit)
        except (zlib.error, lzma.LZMAError) as err:
            raise DataError(f"{name}: truncated or corrupt TIFF image data ({err})") from err
        if size > limit:
            raise DataError(f"{name}: a strip/tile decompresses to far more than the image it declares "
                            "(possible decompression bomb); refused")


def _packbits_size(segment: bytes, limit: int) -> int:
    """Decoded length of a PackBits segment, counted up to just past ``limit``."""
    size = position = 0
    while position < len(segment) and size <= limit:
        header = segment[position]
        if header < 128:  # literal run of header + 1 bytes
            size += header + 1
            position += header + 2
        elif header > 128:  # one byte repeated 257 - header times
            size += 257 - header
            position += 2
        else:  # no-op
            position += 1
    return size


def _invert(array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        return ~array
    if array.dtype.kind == "u":
        return np.iinfo(array.dtype).max - array
    return ~array if array.dtype.kind == "i" else -array


def _read_with_pillow(data: bytes, name: str, fmt: str) -> tuple[np.ndarray, list[str]]:
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as err:
        raise DataError(f"{name}: declares an enormous image (possible decompression bomb); refused") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        if fmt == "TIFF":  # tifffile has read its header: Pillow does not support this layout
            raise DataError(f"{name}: TIFF pixel layout not supported ({err})") from err
        raise DataError(f"{name}: truncated or corrupt {fmt} file (its header cannot be read)") from err
    with image:
        # Pillow turns a TIFF upright itself as it decodes it, and drops its tag, so a TIFF's tag is read first.
        # Other formats are asked afterwards: getexif() decodes a PNG, which would hide its 16-bit layout.
        tiff_tag = _orientation_tag(lambda: image.tag_v2.get(274)) if fmt == "TIFF" else None
        pixels, notes = _pillow_pixels(image, data, name, fmt)
        tag_now = _orientation_tag(lambda: image.getexif().get(274))
        if tiff_tag is None:
            return _upright(pixels, notes, tag_now)
        return _upright(pixels, notes, tiff_tag, already_turned=tag_now != tiff_tag)


def _pillow_pixels(image: Image.Image, data: bytes, name: str, fmt: str) -> tuple[np.ndarray, list[str]]:
    """Checked pixels of an opened Pillow image, as stored."""
    _check_size(*image.size, name)
    _refuse_pages(getattr(image, "n_frames", 1), name)
    mode = image.mode
    # Pillow keeps only the high byte of 16-bit colour PNG samples; OpenCV keeps all 16 bits.
    rawmode = str(image.tile[0].args) if image.tile else ""
    if fmt == "PNG" and mode in ("RGB", "RGBA", "LA") and rawmode.endswith(";16B"):
        return _read_deep_png(data, name, mode)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as err:
        raise DataError(f"{name}: truncated or corrupt image data ({err})") from err
    if mode in ("1", "L", "I", "F", "RGB") or mode.startswith("I;16"):
        return np.asarray(image), []
    if mode in ("LA", "La"):
        return np.asarray(image.convert("L")), [f"{mode} image converted to grayscale (transparency dropped)"]
    if mode in ("RGBA", "RGBa", "PA", "P", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        dropped = " (transparency dropped)" if "A" in mode or "a" in mode else ""
        return np.asarray(image.convert("RGB")), [f"{mode} image converted to RGB{dropped}"]
    raise DataError(f"{name}: unsupported pixel format '{mode}'")


def _read_deep_png(data: bytes, name: str, mode: str) -> tuple[np.ndarray, list[str]]:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.ndim != 3 or decoded.shape[2] not in (3, 4):
        raise DataError(f"{name}: truncated or corrupt image data (16-bit PNG)")
    if mode == "LA":  # OpenCV spreads gray+alpha over BGRA
        return decoded[..., 0], ["LA image converted to grayscale (transparency dropped)"]
    notes = ["RGBA image converted to RGB (transparency dropped)"] if decoded.shape[2] == 4 else []
    return decoded[..., 2::-1], notes  # BGR(A) -> RGB


# ---------------------------------------------------------------------------------------------------
# Conversion to the dataset's form, each step with its note
# ---------------------------------------------------------------------------------------------------

def _depth_label(dtype: np.dtype) -> str:
    bits = dtype.itemsize * 8
    return {"f": f"{bits}-bit float", "i": f"{bits}-bit signed integer"}.get(dtype.kind, f"{bits}-bit")


def _as_uint8(array: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """Scale to uint8: 1-bit to 0/255, other depths from each channel's minimum (0) to maximum (255)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        notes.append("1-bit (black and white) image scaled to 0 and 255")
        return array.astype(np.uint8) * 255
    if array.dtype.kind not in "uif":
        raise DataError(f"{name}: unsupported pixel type {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{name}: contains non-finite pixel values (NaN or infinity)")
    channels = array[..., None] if array.ndim == 2 else array
    out = np.zeros(channels.shape, np.uint8)
    constant = 0
    for k in range(channels.shape[2]):  # one channel at a time bounds the float64 working copy
        channel = channels[..., k].astype(np.float64)
        low, high = channel.min(), channel.max()
        if high > low:
            out[..., k] = np.clip(np.rint((channel - low) * (255.0 / (high - low))), 0, 255)
        else:
            constant += 1
    scope = "from its minimum (0) to its maximum (255)" if array.ndim == 2 else \
        "each channel from its own minimum (0) to maximum (255)"
    constant_note = f"; {constant} constant channel(s) set to 0" if constant else ""
    notes.append(f"{_depth_label(array.dtype)} image rescaled to 0-255 ({scope}){constant_note}")
    return out[..., 0] if array.ndim == 2 else out


# Masks are resized nearest-neighbour both ways; NEAREST_EXACT samples pixel centres as INTER_AREA/LINEAR do,
# where plain NEAREST takes each block's first pixel and shifts a mask up to half a 256-grid pixel off its slice.
_NEAREST = cv2.INTER_NEAREST_EXACT


def _square(height: int, width: int) -> tuple[int, int, int]:
    """The centered square `_fit` pads a height x width picture into: (side, top, left)."""
    side = max(height, width)
    return side, (side - height) // 2, (side - width) // 2


def _fit(array: np.ndarray, notes: list[str], *, nearest: bool = False, label: str = "") -> np.ndarray:
    """Pad to a centered square with zeros (keeping the proportions), then resize to 256x256."""
    height, width = array.shape[:2]
    side, top, left = _square(height, width)
    if height != width:
        padding = [(top, side - height - top), (left, side - width - left)] + [(0, 0)] * (array.ndim - 2)
        array = np.pad(array, padding)
        notes.append(f"{label}padded from {width}x{height} to {side}x{side} (zeros, centered)")
    if side != SIDE:
        notes.append(f"{label}{RESIZED}{side}x{side} to {SIDE}x{SIDE}")
        interpolation = _NEAREST if nearest else cv2.INTER_AREA if side > SIDE else cv2.INTER_LINEAR
        array = cv2.resize(array, (SIDE, SIDE), interpolation=interpolation)
    return np.ascontiguousarray(array)


def read_user_slice(data: bytes, name: str) -> SliceInput:
    """Decode an uploaded slice to a (256, 256, 3) uint8 ``SliceInput`` with notes on every conversion."""
    name = safe_name(name)
    pixels, notes = _decode(data, name)
    height, width = pixels.shape[:2]
    image = _as_uint8(pixels, name, notes)
    out_of_distribution = None
    if image.ndim == 2:
        notes.append(GRAYSCALE_NOTE)
        out_of_distribution = GRAYSCALE_OUT_OF_DISTRIBUTION
        image = np.repeat(image[..., None], 3, axis=2)
    image = _fit(image, notes)
    notes += grey_air_notes(image)
    side, top, left = _square(height, width)
    return SliceInput(name, image, None, notes, (width, height), out_of_distribution, side, (top, left))


def mask_on_upload_grid(mask: np.ndarray, item: SliceInput) -> np.ndarray:
    """A (256, 256) mask of ``item`` brought back to its uploaded grid, (height, width) bool, undoing `_fit`.

    Nearest-neighbour back to the padded square, then the padding cropped: the mask lies over the upload as
    a viewer shows it (upright, its Orientation tag applied; the mask file carries no tag, so viewers show it
    as stored, which is that same upright frame).
    """
    if mask.shape != SLICE_SHAPE[:2]:
        raise ValueError(f"expected a {SIDE}x{SIDE} mask, got {mask.shape}")
    width, height = item.original_size
    side, (top, left) = item.padded_side, item.padding
    square = mask.astype(np.uint8)
    if side != SIDE:
        square = cv2.resize(square, (side, side), interpolation=_NEAREST)
    return np.ascontiguousarray(square[top: top + height, left: left + width].astype(bool))


def grey_air_notes(image: np.ndarray) -> list[str]:
    """A note per channel whose air the models will see shifted to black (``preprocess.black_background``)."""
    levels = grey_air_levels(image[None])[0]
    return [f"{CHANNEL_NAMES[k]} channel stores its air at grey level {level}: the models see it shifted to black, "
            "as in their training slices" for k, level in enumerate(levels) if level]


def read_user_image(data: bytes, name: str) -> tuple[np.ndarray, list[str], tuple[int, int]]:
    """Decode an uploaded slice to (256, 256, 3) uint8, notes on any conversion, and its (width, height)."""
    item = read_user_slice(data, name)
    return item.image, item.notes, item.original_size


def read_user_mask(data: bytes, name: str, image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded mask to (256, 256) bool (``brainseg.core.data.mask_pixels_to_bool`` says what is tumor).

    ``image_size`` (width, height) is its slice's size as uploaded; a mask of another size is refused.
    The mask is padded and resized exactly as its slice is, so the two stay aligned.
    """
    name = safe_name(name)
    pixels, decode_notes = _decode(data, name)
    notes = [f"mask: {note}" for note in decode_notes]
    height, width = pixels.shape[:2]
    if image_size is not None and (width, height) != tuple(image_size):
        raise DataError(f"{name}: mask is {width}x{height} but its slice is {image_size[0]}x{image_size[1]}")
    tumor, rule_notes = mask_pixels_to_bool(pixels, name)
    notes += rule_notes
    mask = _fit(tumor.astype(np.uint8), notes, nearest=True, label="mask ").astype(bool)
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
            images[stem] = read_user_slice(data, name)
        except DataError as err:
            errors.append((name, str(err)))
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
