"""Pixel-exact checks of upload decoding: what each conversion does, not only that it has a note."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from bad_inputs import _deflate_bomb_tiff, _png16, _tiff_header_only
from conftest import DEMO_DIR
from PIL import Image

from brainseg.errors import DataError
from brainseg.inference.uploads import (
    GRAYSCALE_NOTE,
    GRAYSCALE_OUT_OF_DISTRIBUTION,
    pair_uploads,
    read_user_image,
    read_user_mask,
    read_user_slice,
)

REAL = DEMO_DIR / "TCGA_CS_6669_20020102" / "TCGA_CS_6669_20020102_12.tif"
RNG = np.random.default_rng(1)
RGB = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)


def _tiff(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **kwargs)
    return buffer.getvalue()


def _pillow(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _rescaled(array: np.ndarray) -> np.ndarray:
    """What the library promises: each channel's minimum to 0 and maximum to 255."""
    values = array.astype(np.float64)
    low, high = values.min(axis=(0, 1)), values.max(axis=(0, 1))
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def test_dataset_slice_is_read_unchanged():
    item = read_user_slice(REAL.read_bytes(), REAL.name)
    assert np.array_equal(item.image, tifffile.imread(REAL))
    assert item.notes == [] and item.out_of_distribution is None and item.original_size == (256, 256)
    image, notes, size = read_user_image(REAL.read_bytes(), REAL.name)  # the tuple form is kept
    assert np.array_equal(image, item.image) and notes == [] and size == (256, 256)


def test_three_channel_float32_tiff_is_rescaled_per_channel():
    source = RGB.astype(np.float32) * np.array([0.5, 2.0, 1e-3], np.float32) - 7.0
    item = read_user_slice(_tiff(source), "float.tif")
    assert np.array_equal(item.image, _rescaled(source))
    assert item.notes == ["32-bit float image rescaled to 0-255 (each channel from its own minimum (0) to maximum "
                          "(255))"]
    assert item.out_of_distribution is None


@pytest.mark.parametrize("fmt", ["tiff", "png"])
def test_three_channel_16_bit_keeps_all_its_bits(fmt):
    source = RGB.astype(np.uint16) * 16 + 3  # 12-bit data: keeping the high byte only would darken it
    data = _tiff(source.astype(">u2"), byteorder=">") if fmt == "tiff" else _png16(source)
    item = read_user_slice(data, f"deep.{fmt}")
    assert np.array_equal(item.image, _rescaled(source))
    assert item.notes and item.notes[0].startswith("16-bit image rescaled to 0-255")


def test_grayscale_is_marked_out_of_distribution_and_keeps_its_note():
    item = read_user_slice(_pillow(RGB[..., 1].copy(), "PNG"), "gray.png")
    assert item.out_of_distribution == GRAYSCALE_OUT_OF_DISTRIBUTION
    assert GRAYSCALE_NOTE in item.notes
    assert all(np.array_equal(item.image[..., k], RGB[..., 1]) for k in range(3))


def test_non_square_slice_is_padded_and_its_mask_stays_aligned():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:160] = 200  # a bright block, and the mask marks exactly it
    mask = np.zeros((200, 300), np.uint8)
    mask[50:150, 100:160] = 255
    slices, refused = pair_uploads([("wide.png", _pillow(image, "PNG")), ("wide_mask.png", _pillow(mask, "PNG"))])
    assert refused == []
    item = slices[0]
    assert item.original_size == (300, 200)
    assert item.notes[:2] == ["padded from 300x200 to 300x300 (zeros, centered)", "resized from 300x300 to 256x256"]
    assert "mask padded from 300x200 to 300x300 (zeros, centered)" in item.notes
    # proportions kept: 50 rows of padding above (of 300), block at rows 100-200 and columns 100-160
    scale = 256 / 300
    assert item.image[: int(50 * scale) - 1].max() == 0 and item.image[-int(50 * scale) + 1:].max() == 0
    bright = item.image[..., 0] > 100
    assert np.abs(bright.astype(int) - item.mask.astype(int)).sum() < 0.05 * item.mask.sum()
    rows, cols = np.nonzero(item.mask)
    assert abs(rows.mean() - 150 * scale) < 1 and abs(cols.mean() - 130 * scale) < 1


def test_tall_image_is_padded_left_and_right():
    item = read_user_slice(_tiff(np.full((256, 128, 3), 90, np.uint8)), "tall.tif")
    assert item.notes == ["padded from 128x256 to 256x256 (zeros, centered)"]
    assert item.image[:, :64].max() == 0 and item.image[:, -64:].max() == 0 and (item.image[:, 64:192] == 90).all()


@pytest.mark.parametrize("layout", [{"tile": (64, 64)}, {"photometric": "rgb", "planarconfig": "separate"},
                                    {"compression": "zlib", "predictor": True}, {"compression": "lzma"}])
def test_tiff_layouts_decode_exactly(layout):
    source = np.moveaxis(RGB, -1, 0).copy() if layout.get("planarconfig") == "separate" else RGB
    item = read_user_slice(_tiff(source, **layout), "layout.tif")
    assert np.array_equal(item.image, RGB) and item.notes == []


@pytest.mark.parametrize("compression", ["tiff_lzw", "packbits"])
def test_codecs_tifffile_lacks_are_decoded_by_pillow(compression):
    item = read_user_slice(_pillow(RGB, "TIFF", compression=compression), "pillow.tif")
    assert np.array_equal(item.image, RGB) and item.notes == []


def test_deep_colour_in_a_codec_only_pillow_reads_is_refused_not_narrowed():
    with pytest.raises(DataError, match=r"deep_lzw.tif: cannot decode .* 3 channels of 16-bit samples with LZW"):
        read_user_slice(_tiff_lzw_header(RGB.astype(np.uint16)), "deep_lzw.tif")


def _tiff_lzw_header(array: np.ndarray, **kwargs) -> bytes:
    """An uncompressed TIFF relabelled as LZW (tifffile cannot write LZW without imagecodecs)."""
    data = bytearray(_tiff(array, **kwargs))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        tag = tif.pages[0].tags["Compression"]
        position = tag.valueoffset
    data[position: position + 2] = (5).to_bytes(2, "little")
    return bytes(data)


def test_min_is_white_is_inverted_with_a_note():
    item = read_user_slice(_tiff(RGB[..., 0].copy(), photometric="miniswhite"), "white.tif")
    assert np.array_equal(item.image[..., 0], 255 - RGB[..., 0])
    assert item.notes[0] == "MinIsWhite image inverted (the file stores 0 as white)"


def test_sizes_are_refused_from_the_header_without_decoding(monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_decoding)
    with pytest.raises(DataError, match=r"huge.tif: 5000x5000 pixels is over the 16,777,216-pixel limit"):
        read_user_slice(_tiff_header_only(5000, 5000), "huge.tif")
    with pytest.raises(DataError, match=r"bomb.tif: declares a 100000x100000-pixel image \(possible decompression"):
        read_user_slice(_tiff_header_only(100_000, 100_000), "bomb.tif")
    with pytest.raises(DataError, match=r"zbomb.tif: a strip/tile decompresses to far more .* decompression bomb"):
        read_user_slice(_deflate_bomb_tiff(), "zbomb.tif")


def test_tiff_refusals_name_the_file():
    cases = {
        "pages.tif": (_tiff(np.stack([RGB, RGB])), "holds 2 pages/frames"),
        "cut.tif": (REAL.read_bytes()[:5000], "truncated or corrupt TIFF file (its header cannot be read)"),
        "nan.tif": (_tiff(np.full((64, 64, 3), np.inf, np.float32)), "non-finite"),
        "two.tif": (_tiff(RGB[..., :2], photometric="minisblack", planarconfig="contig"), "2-channel image"),
        # refused from the header, also when Pillow would decode it (and take it for gray + alpha)
        "two_lzw.tif": (_tiff_lzw_header(RGB[..., :2], photometric="minisblack", planarconfig="contig"),
                        "2-channel image"),
        "tiny.tif": (_tiff(RGB[:8, :8]), "8x8 pixels is too small"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(DataError) as caught:
            read_user_slice(data, name)
        assert str(caught.value).startswith(f"{name}: ") and message in str(caught.value), caught.value


def test_mask_from_tifffile_float_and_rgb():
    mask = np.zeros((256, 256), np.float32)
    mask[10:20, 10:20] = 1.0
    decoded, notes = read_user_mask(_tiff(mask), "m_mask.tif", (256, 256))
    assert decoded.sum() == 100 and notes == []
    coloured = np.zeros((256, 256, 3), np.uint8)
    coloured[10:20, 10:20, 0] = 255  # a red mask: its luminance is under half, its red channel is not
    decoded, notes = read_user_mask(_tiff(coloured), "red_mask.tif", (256, 256))
    assert decoded.sum() == 100 and "different channels" in notes[0]



@pytest.mark.parametrize(("values", "dtype", "note"), [
    ((0, 255), np.uint8, None),  # the dataset's own masks
    ((0, 1), np.uint8, None),  # ITK-SNAP, 3D Slicer, numpy exports: read as empty before
    ((0, 1), np.uint16, None),
    ((0, 2, 4), np.uint8, "labels 2, 4"),  # a label map: every label is tumor
])
def test_binary_and_label_masks_are_read_the_same_by_the_dataset_and_the_upload_reader(tmp_path, values, dtype, note):
    from brainseg.core.data import read_mask

    mask = np.zeros((256, 256), dtype)
    mask[100:150, 100:150] = values[1]
    mask[100:110, 100:150] = values[-1]
    path = tmp_path / "case_1_mask.tif"
    tifffile.imwrite(path, mask)
    assert read_mask(path).sum() == 2500
    decoded, notes = read_user_mask(path.read_bytes(), path.name, (256, 256))
    assert decoded.sum() == 2500
    assert (note in " ".join(notes)) if note else notes == []
    green = np.zeros((256, 256, 3), np.uint8)
    green[100:150, 100:150, 1] = 255  # a coloured mask: only its green channel is set
    tifffile.imwrite(path, green, photometric="rgb")
    assert read_mask(path).sum() == 2500 and read_user_mask(path.read_bytes(), path.name)[0].sum() == 2500


def test_a_tiff_with_a_zero_tile_size_is_refused_and_its_batch_goes_on():
    data = bytearray(_tiff(np.zeros((64, 64), np.uint8), tile=(16, 16)))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        offset = tif.pages[0].tags["TileLength"].valueoffset
    data[offset:offset + 4] = (0).to_bytes(4, "little")  # TileLength 0: a division by zero in the tile table
    good = _tiff(np.full((256, 256, 3), 90, np.uint8), photometric="rgb")
    slices, refused = pair_uploads([("ok.tif", good), ("zero_tiles.tif", bytes(data))])
    assert [item.name for item in slices] == ["ok.tif"]
    assert refused == [("zero_tiles.tif", "zero_tiles.tif: truncated or corrupt TIFF file (its header cannot be "
                                          "read)")]


@pytest.mark.parametrize(("fmt", "orientation"), [("TIFF", 2), ("PNG", 6), ("JPEG", 3), ("TIFF", 8), ("LZW", 6)])
def test_a_slice_and_its_mask_are_turned_upright_by_their_orientation_tags(fmt, orientation):
    """LZW: a TIFF that Pillow decodes (tifffile needs imagecodecs for it), so Pillow reads its tag."""
    from PIL import ImageOps

    image = np.zeros((256, 256, 3), np.uint8)
    image[20:60, 10:200] = 200  # a bright band near the stored top-left
    mask = np.zeros((256, 256), np.uint8)
    mask[20:60, 10:100] = 255

    def tagged(array: np.ndarray, mask_file: bool) -> bytes:
        if fmt == "TIFF":
            return _tiff(array, extratags=[(274, "H", 1, orientation, True)])
        picture, buffer = Image.fromarray(array), io.BytesIO()
        if fmt == "LZW":
            picture.save(buffer, "TIFF", compression="tiff_lzw", tiffinfo={274: orientation})
            return buffer.getvalue()
        exif = picture.getexif()
        exif[274] = orientation
        picture.save(buffer, "PNG" if mask_file else fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
        return buffer.getvalue()

    suffix = {"TIFF": ".tif", "LZW": ".tif", "PNG": ".png", "JPEG": ".jpg"}[fmt]
    slices, refused = pair_uploads([(f"s{suffix}", tagged(image, False)), ("s_mask.png" if fmt == "JPEG" else
                                                                          f"s_mask{suffix}", tagged(mask, True))])
    assert refused == [] and len(slices) == 1
    viewed = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(tagged(image, False)))))  # as viewers show it
    assert np.abs(slices[0].image.astype(int) - viewed).max() <= (8 if fmt == "JPEG" else 0)
    assert any("Orientation tag" in note for note in slices[0].notes)
    # The mask turned the same way: it still covers the left part of the band, as the user sees it.
    assert (slices[0].image[slices[0].mask] > 150).all() and slices[0].mask.sum() == 40 * 90


def test_a_grey_level_mask_is_cut_at_half_its_maximum_with_a_note():
    mask = np.tile(np.arange(256, dtype=np.uint8), (256, 1))  # 256 grey levels, one per column
    decoded, notes = read_user_mask(_tiff(mask), "grey_mask.tif", (256, 256))
    assert decoded.sum() == 128 * 256 and "256 distinct values" in notes[0]


def test_a_slice_with_grey_air_gets_a_note_and_one_with_black_air_none(demo_dir):
    grey = next((demo_dir / "TCGA_FG_A4MU_20030903").glob("*_1.tif"))  # pre-contrast air stored at 61
    item = read_user_slice(grey.read_bytes(), grey.name)
    assert item.notes == ["pre-contrast channel stores its air at grey level 61: the models see it shifted to black, "
                          "as in their training slices"]
    black = next((demo_dir / "TCGA_CS_6669_20020102").glob("*_1.tif"))
    assert read_user_slice(black.read_bytes(), black.name).notes == []
