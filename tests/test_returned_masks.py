"""Masks that leave the program (Upload page downloads, `brainseg predict` files) lie on the uploaded image's own
grid: padding and resize undone, so a mask laid over the original covers what the models found on it.

A stand-in cascade "segments" the FLAIR channel (tumor where it is bright), so the right returned mask is known
exactly: the region drawn on the original.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from brainseg.inference.cascade import CascadeResult
from brainseg.inference.predict import mask_stem, predict_files, predict_uploads
from brainseg.inference.uploads import mask_on_upload_grid, read_user_slice

ROOT = Path(__file__).resolve().parent.parent
# (height, width): wider, taller, larger square, smaller than 256 (upsampled), one side at 256
SIZES = [(200, 300), (300, 200), (512, 512), (90, 120), (256, 400)]


class FlairProbe:
    """A cascade whose every slice passes the gate and whose map is the FLAIR channel / 255."""

    default_threshold = 0.5
    neighbour_reach = 0

    def predict(self, images: np.ndarray, slice_numbers: np.ndarray | None = None) -> CascadeResult:
        return CascadeResult(np.ones(len(images), np.float32), images[..., 1].astype(np.float32) / 255)


def _drawn(height: int, width: int) -> np.ndarray:
    """An off-centre region: a rectangle and a disk, so a shift or stretch along either axis shows."""
    region = np.zeros((height, width), np.uint8)
    region[height // 5: height // 2, width // 8: width // 3] = 1
    cv2.circle(region, (2 * width // 3, 2 * height // 3), min(height, width) // 6, 1, -1)
    return region.astype(bool)


def _image(region: np.ndarray) -> np.ndarray:
    return np.repeat(np.where(region, 255, 0).astype(np.uint8)[..., None], 3, axis=2)


def _png(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def _read_mask(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data))) > 0


def _assert_covers(returned: np.ndarray, region: np.ndarray) -> None:
    """Same grid, and the two differ at most on the region's one-pixel edge (nearest-neighbour rounding)."""
    assert returned.shape == region.shape
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(region.astype(np.uint8), kernel).astype(bool) & ~cv2.erode(region.astype(np.uint8),
                                                                                  kernel).astype(bool)
    off = (returned ^ region) & ~edge
    assert not off.any(), f"{off.sum()} pixels wrong away from the region's edge"


@pytest.mark.parametrize("shape", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_predict_writes_masks_on_each_inputs_grid(tmp_path, shape):
    region = _drawn(*shape)
    source = tmp_path / "in" / "case_1.png"
    source.parent.mkdir()
    source.write_bytes(_png(_image(region)))
    predict_files(FlairProbe(), [source.parent], tmp_path / "out", 0.5)
    for suffix in (".png", ".tif"):
        written = (tmp_path / "out" / f"{mask_stem(source.name)}{suffix}").read_bytes()
        _assert_covers(_read_mask(written), region)


def test_upload_zip_holds_masks_on_each_images_grid():
    regions = {f"case_{k}.png": _drawn(*shape) for k, shape in enumerate(SIZES)}
    prediction = predict_uploads(FlairProbe(), [(n, _png(_image(r))) for n, r in regions.items()], 0.5)
    assert prediction.masks.shape[1:] == (256, 256)  # the in-app overlays stay on the models' grid
    with zipfile.ZipFile(io.BytesIO(prediction.archive())) as bundle:
        for name, region in regions.items():
            for suffix in (".png", ".tif"):
                _assert_covers(_read_mask(bundle.read(f"{mask_stem(name)}{suffix}")), region)


@pytest.mark.parametrize("fmt", ["TIFF", "PNG"])
def test_returned_mask_is_upright_like_the_image_a_viewer_shows(tmp_path, fmt):
    """A slice stored rotated with an Orientation tag: viewers show it turned upright; the mask file carries no
    tag, so viewers show it as stored, which must be that upright frame."""
    upright = _drawn(200, 300)
    stored = np.rot90(upright, 1)  # tag 6 (rotate 90 degrees clockwise to view) undoes this
    exif = Image.Exif()
    exif[274] = 6
    buffer = io.BytesIO()
    Image.fromarray(_image(stored)).save(buffer, format=fmt, exif=exif)
    source = tmp_path / "in" / f"turned.{fmt.lower()[:3]}"
    source.parent.mkdir()
    source.write_bytes(buffer.getvalue())
    from PIL import ImageOps

    shown = np.asarray(ImageOps.exif_transpose(Image.open(source)))[..., 1] > 0  # what a viewer shows
    assert np.array_equal(shown, upright)
    predict_files(FlairProbe(), [source], tmp_path / "out", 0.5)
    for suffix in (".png", ".tif"):
        written = (tmp_path / "out" / f"{mask_stem(source.name)}{suffix}").read_bytes()
        with Image.open(io.BytesIO(written)) as mask_file:
            assert 274 not in mask_file.getexif()  # no tag: shown as stored
        _assert_covers(_read_mask(written), upright)
    with tifffile.TiffFile(tmp_path / "out" / f"{mask_stem(source.name)}.tif") as tif:
        assert 274 not in tif.pages[0].tags


def test_mask_on_upload_grid_undoes_fit_exactly_for_a_dataset_slice():
    item = read_user_slice(_png(_image(_drawn(256, 256))), "plain.png")
    mask = np.random.default_rng(0).random((256, 256)) > 0.5
    assert np.array_equal(mask_on_upload_grid(mask, item), mask)
    with pytest.raises(ValueError, match="256x256"):
        mask_on_upload_grid(mask[:100], item)


def test_upload_page_downloads_masks_on_the_images_grid(monkeypatch):
    """The page's one-mask downloads hold the mask on the upload's grid and say so; its views stay at 256."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import AppTest

    from brainseg.app import dashboard

    monkeypatch.setattr(dashboard, "sidebar", lambda *a, **k: None)
    monkeypatch.setattr(dashboard, "require_cascade", FlairProbe)
    monkeypatch.setattr(dashboard, "models_key", lambda: "probe")
    stored: dict[str, bytes] = {}
    load = MemoryMediaFileStorage.load_and_get_id

    def keep(self, data, mimetype, kind, filename=None):  # what each download button would serve
        if filename:
            stored[filename] = data
        return load(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    regions = {"tall.png": _drawn(300, 200), "wide.png": _drawn(200, 300)}
    at = AppTest.from_file(str(ROOT / "pages" / "upload.py"), default_timeout=60).run()
    at.file_uploader(key="uploads").set_value([(n, _png(_image(r)), "image/png") for n, r in regions.items()]).run()
    assert not at.exception, [e.value for e in at.exception]
    for k, (name, region) in enumerate(regions.items()):
        at.selectbox(key="upload_pick").set_value(k).run()
        stem = mask_stem(name)
        _assert_covers(_read_mask(stored[f"{stem}.png"]), region)
        _assert_covers(_read_mask(stored[f"{stem}.tif"]), region)
        height, width = region.shape
        labels = [b.label for b in at.get("download_button")]
        assert f"This mask as PNG ({width}×{height}, this image's grid)" in labels
