"""A corpus of bad (and awkward) upload files, made in code: nothing is downloaded.

Each case is a list of (file name, bytes) and what must happen: ``refused`` with a message
containing ``expect``, accepted with a note containing ``expect`` (``note``), or accepted with no
note at all (``clean``). ``out_of_distribution``, when not None, says whether the accepted slice
must be marked as outside the training distribution.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
import tifffile
from PIL import Image


@dataclass
class BadInput:
    kind: str
    files: list[tuple[str, bytes]]
    outcome: str  # "refused", "note" or "clean"
    expect: str
    about: str = ""  # the file name the message is about (default: the first file)
    out_of_distribution: bool | None = None  # None: not checked

    @property
    def subject(self) -> str:
        return self.about or self.files[0][0]


def _save(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _tiff(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **kwargs)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b"")


def _tiff_header_only(width: int, height: int) -> bytes:
    """A little-endian TIFF whose header declares width x height 8-bit pixels but holds 64 bytes."""
    def entry(tag: int, kind: int, value: int) -> bytes:  # kind 3: SHORT, 4: LONG
        return struct.pack("<HHI", tag, kind, 1) + (struct.pack("<H2x", value) if kind == 3 else
                                                      struct.pack("<I", value))

    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, height), (279, 4, 64)]
    data_offset = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags)) + b"".join(
        entry(tag, kind, data_offset if tag == 273 else value) for tag, kind, value in tags) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64


def _deflate_bomb_tiff() -> bytes:
    """A 256x256 8-bit TIFF whose one Deflate strip expands to 20 MB (the header declares 64 KB)."""
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        writer.write(iter([zlib.compress(b"\x00" * (20 * 2**20), 9)]), shape=(256, 256), dtype=np.uint8,
                     compression="zlib", rowsperstrip=256)
    return buffer.getvalue()


def _png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (Pillow cannot write 16-bit colour; OpenCV can, from BGR)."""
    ok, encoded = cv2.imencode(".png", array[..., ::-1] if array.ndim == 3 else array)
    assert ok
    return encoded.tobytes()


def make_corpus(real_slice: bytes, real_mask: bytes) -> list[BadInput]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    gray = rgb[..., 1]
    png = _save(rgb, "PNG")
    tif = _save(rgb, "TIFF")
    mask = np.zeros((256, 256), np.uint8)
    mask[100:140, 100:140] = 255
    palette = Image.fromarray(rgb).convert("P")
    pal_buffer = io.BytesIO()
    palette.save(pal_buffer, format="PNG")
    pages = io.BytesIO()
    Image.fromarray(rgb).save(pages, format="TIFF", save_all=True, append_images=[Image.fromarray(rgb)])
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    lzw = io.BytesIO()
    Image.fromarray(gray).save(lzw, format="TIFF", compression="tiff_lzw")
    cut_after_header = _tiff(gray, rowsperstrip=256)  # tifffile writes the header first, pixels after
    non_square = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    large = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
    return [
        BadInput("zero-byte file", [("zero.tif", b"")], "refused", "empty (0 bytes)"),
        BadInput("text renamed .tif", [("text.tif", b"patient notes, not pixels\n" * 20)], "refused",
                 "not a TIFF, PNG or JPEG"),
        BadInput("text renamed .png", [("text.png", b"hello world\n" * 20)], "refused", "not a TIFF, PNG or JPEG"),
        BadInput("truncated TIFF", [("cut.tif", real_slice[: len(real_slice) // 3])], "refused",
                 "truncated or corrupt"),
        BadInput("truncated PNG", [("cut.png", png[: len(png) // 2])], "refused", "truncated or corrupt"),
        BadInput("HTML disguised as PNG", [("page.png", b"<html><body><script>alert(1)</script></body></html>")],
                 "refused", "not a TIFF, PNG or JPEG"),
        BadInput("SVG disguised as PNG", [("vector.png", b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')],
                 "refused", "not a TIFF, PNG or JPEG"),
        BadInput("shell script disguised as TIFF", [("run.tif", b"#!/bin/sh\nrm -rf /\n")], "refused",
                 "not a TIFF, PNG or JPEG"),
        BadInput("unsupported extension", [("scan.bmp", _save(rgb, "BMP"))], "refused", "unsupported file type"),
        BadInput("no extension", [("slice", png)], "refused", "unsupported file type"),
        BadInput("16-bit TIFF", [("deep.tif", _tiff(gray.astype(np.uint16) * 200))], "note", "rescaled to 0-255"),
        BadInput("float TIFF", [("float.tif", _tiff(gray.astype(np.float32) / 255))], "note", "rescaled to 0-255"),
        BadInput("float TIFF with NaN", [("nan.tif", _tiff(np.full((64, 64), np.nan, np.float32)))], "refused",
                 "non-finite"),
        BadInput("1-channel PNG", [("gray.png", _save(gray, "PNG"))], "note", "read as FLAIR",
                 out_of_distribution=True),
        BadInput("2-channel TIFF", [("two.tif", _tiff(rgb[..., :2], photometric="minisblack", planarconfig="contig"))],
                 "refused", "2-channel image"),
        BadInput("RGBA PNG", [("alpha.png", _save(np.dstack([rgb, np.full((256, 256), 255, np.uint8)]), "PNG"))],
                 "note", "transparency dropped"),
        BadInput("palette PNG", [("palette.png", pal_buffer.getvalue())], "note", "P image converted to RGB"),
        BadInput("CMYK JPEG", [("cmyk.jpg", cmyk.getvalue())], "note", "CMYK image converted to RGB"),
        BadInput("1x1 image", [("dot.png", _save(np.zeros((1, 1, 3), np.uint8), "PNG"))], "refused", "too small"),
        BadInput("4000x4000 image", [("huge.png", _save(np.zeros((4000, 4000), np.uint8), "PNG"))], "note",
                 "resized from 4000x4000"),
        BadInput("decompression bomb", [("bomb.png", _png_header_only(100_000, 100_000))], "refused",
                 "decompression bomb"),
        BadInput("over the pixel limit", [("wide.png", _png_header_only(5000, 5000))], "refused", "pixel limit"),
        BadInput("multi-page TIFF", [("stack.tif", pages.getvalue())], "refused", "2 pages/frames"),
        BadInput("mask of another size",
                 [("sized.png", png), ("sized_mask.png", _save(np.zeros((128, 128), np.uint8), "PNG"))], "refused",
                 "mask is 128x128 but its slice is 256x256", about="sized_mask.png"),
        BadInput("mask with values other than 0/255",
                 [("soft.png", png), ("soft_mask.png", _save((mask // 2 + 7).astype(np.uint8), "PNG"))], "note",
                 "distinct values", about="soft.png"),
        BadInput("mask without its image", [("lonely_mask.tif", _save(mask, "TIFF"))], "refused",
                 "mask without its image"),
        BadInput("corrupt mask", [("pair.png", png), ("pair_mask.png", b"\x89PNG broken")], "refused",
                 "not a TIFF, PNG or JPEG", about="pair_mask.png"),
        BadInput("duplicate names", [("twice.tif", tif), ("twice.tif", tif)], "refused", "same name",
                 about="twice.tif"),
        BadInput("path-traversal name", [("../../escape.tif", _tiff(gray))], "note",
                 "grayscale image read as FLAIR and copied to all three channels", about="escape.tif"),
        BadInput("non-UTF-8 name", [("caf\udce9.png", _save(large, "PNG"))], "note", "resized from 512x512 to 256x256",
                 about="caf?.png"),
        BadInput("over the size limit", [("big.tif", b"II*\x00" + b"\x00" * (50 * 1024 * 1024 + 1))], "refused",
                 "over the 50 MB limit"),
        BadInput("real slice with real mask", [("real.tif", real_slice), ("real_mask.tif", real_mask)], "clean", "",
                 about="real.tif", out_of_distribution=False),
        BadInput("3-channel float32 TIFF", [("float_rgb.tif", _tiff(rgb.astype(np.float32) / 255))], "note",
                 "32-bit float image rescaled to 0-255 (each channel", out_of_distribution=False),
        BadInput("3-channel big-endian 16-bit TIFF",
                 [("deep_rgb.tif", _tiff(rgb.astype(">u2") * 257, byteorder=">"))], "note",
                 "16-bit image rescaled to 0-255 (each channel", out_of_distribution=False),
        BadInput("16-bit RGB PNG", [("deep_rgb.png", _png16(rgb.astype(np.uint16) * 16))], "note",
                 "16-bit image rescaled to 0-255 (each channel"),
        BadInput("non-square image", [("wide.tif", _tiff(non_square))], "note",
                 "padded from 300x200 to 300x300 (zeros, centered)"),
        BadInput("LZW TIFF (decoded by Pillow)", [("lzw.tif", lzw.getvalue())], "note",
                 "grayscale image read as FLAIR", out_of_distribution=True),
        BadInput("MinIsWhite TIFF", [("white.tif", _tiff(gray, photometric="miniswhite"))], "note",
                 "MinIsWhite image inverted"),
        BadInput("TIFF cut after its header", [("cut_late.tif", cut_after_header[: len(cut_after_header) // 2])],
                 "refused", "truncated or corrupt TIFF file"),
        BadInput("TIFF declaring gigapixels", [("bomb.tif", _tiff_header_only(100_000, 100_000))], "refused",
                 "decompression bomb"),
        BadInput("TIFF declaring 5000x5000", [("wide_header.tif", _tiff_header_only(5000, 5000))], "refused",
                 "pixel limit"),
        BadInput("Deflate bomb TIFF", [("zbomb.tif", _deflate_bomb_tiff())], "refused", "decompression bomb"),
        BadInput("4-channel TIFF that is not RGBA",
                 [("four.tif", _tiff(np.dstack([rgb, gray]), photometric="minisblack", planarconfig="contig"))],
                 "refused", "4-channel image"),
        BadInput("complex-valued TIFF", [("complex.tif", _tiff(np.zeros((64, 64), np.complex64)))], "refused",
                 "unsupported pixel type"),
    ]
