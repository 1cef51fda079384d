"""Exports for one patient: masks as multi-page TIFF, NIfTI and PNGs, a per-slice CSV, and a case report.

Pixel spacing is not part of the Kaggle release, so the NIfTI volume has unit voxel spacing and an
identity affine; the report says so.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import zipfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import tifffile
from PIL import Image

from brainseg.core import metrics
from brainseg.inference.cascade import CascadeResult
from brainseg.inference.results import slice_results
from brainseg.reports.overlays import channel_view, difference_view, overlay

RESEARCH_NOTICE = "Research use only. Not for diagnosis. Model estimates, not a medical device."


def masks_to_multipage_tiff(masks: np.ndarray) -> bytes:
    """(N, H, W) bool -> one 0/255 uint8 page per slice."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.where(masks, 255, 0).astype(np.uint8), photometric="minisblack")
    return buffer.getvalue()


def masks_to_nifti(masks: np.ndarray) -> bytes:
    """(N, H, W) bool -> a NIfTI-1 uint8 volume with axes (column, row, slice), unit spacing."""
    volume = np.ascontiguousarray(masks.astype(np.uint8).transpose(2, 1, 0))
    image = nib.Nifti1Image(volume, affine=np.eye(4))
    image.header.set_xyzt_units("mm")
    return image.to_bytes()


def masks_to_png_zip(masks: np.ndarray, names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, mask in zip(names, masks, strict=True):
            png = io.BytesIO()
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(png, format="PNG")
            archive.writestr(f"{name}_pred_mask.png", png.getvalue())
    return buffer.getvalue()


def key_slices(masks: np.ndarray, truth: np.ndarray | None, limit: int = 4) -> list[int]:
    """Slice indices worth showing: largest tumor, then the worst errors, then the largest prediction."""
    chosen: list[int] = []
    reference = truth if truth is not None else masks
    areas = reference.sum(axis=(1, 2))
    if areas.max() > 0:
        chosen.append(int(np.argmax(areas)))
    if truth is not None:
        errors = (masks ^ truth).sum(axis=(1, 2))
        chosen += [int(i) for i in np.argsort(-errors) if errors[i] > 0][:limit]
    chosen.append(int(np.argmax(masks.sum(axis=(1, 2)))))
    return list(dict.fromkeys(chosen))[:limit]


def _png_data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _burden_png(slices, truth_area, predicted_area, probabilities, threshold) -> str:
    fig, ax = plt.subplots(figsize=(9, 2.6))
    width = 0.4
    if truth_area is not None:
        ax.bar(slices - width / 2, truth_area, width, color="#e62828", label="ground truth")
    ax.bar(slices + width / 2, predicted_area, width, color="#28c846", label="prediction")
    ax.set_xlabel("slice")
    ax.set_ylabel("tumor pixels")
    second = ax.twinx()
    second.plot(slices, probabilities, color="#333", marker=".", label="slice score")
    second.axhline(threshold, color="#ff7f0e", linestyle="--", label=f"threshold {threshold:.3f}")
    second.set_ylim(0, 1.02)
    second.set_ylabel("slice score")
    handles = ax.get_legend_handles_labels()[0] + second.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper left", ncols=4)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def case_report_html(patient_id: str, files: list[str], slices: np.ndarray, images: np.ndarray,
                     result: CascadeResult, truth: np.ndarray | None, threshold: float, model_hashes: dict[str, str],
                     institution: str = "") -> str:
    """A self-contained, printable HTML case report (images embedded) with the per-slice results table."""
    masks, probabilities = result.masks(threshold), result.probabilities
    table = slice_results(files, result, threshold, truths=truth)
    rows = []
    for i in key_slices(masks, truth):
        base = channel_view(images[i], "FLAIR")
        tiles = [("FLAIR", base), ("overlay (truth red, prediction green)", overlay(base, truth[i] if truth is not None
                                                                                    else None, masks[i], 0.45))]
        if truth is not None:
            tiles.append(("difference (TP yellow, FP blue, FN magenta)", difference_view(base, masks[i], truth[i])))
        cells = "".join(f'<figure><img src="{_png_data_uri(t)}"><figcaption>{html.escape(c)}</figcaption></figure>'
                        for c, t in tiles)
        rows.append(f"<h3>Slice {slices[i]} — slice score {probabilities[i]:.3f}</h3><div class='row'>{cells}</div>")
    summary = [f"<li>Slices: {len(slices)}; called tumor at threshold {threshold:.3f}: "
               f"{int(table['tumor_called'].sum())}</li>"]
    if truth is not None:
        summary.append(f"<li>Dice per volume: {metrics.dice(masks, truth):.3f}; tumor slices in ground truth: "
                       f"{int(truth.any(axis=(1, 2)).sum())}</li>")
    burden = _burden_png(slices, truth.sum(axis=(1, 2)) if truth is not None else None, masks.sum(axis=(1, 2)),
                         probabilities, threshold)
    hashes = "".join(f"<li>{html.escape(k)}: <code>{html.escape(v)}</code></li>" for k, v in model_hashes.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>brainseg case report {html.escape(patient_id)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
.notice {{ border: 2px solid #b00; padding: .6em; color: #b00; font-weight: bold; }}
.row {{ display: flex; gap: 1em; }} figure {{ margin: 0; }} img {{ width: 240px; }}
figcaption {{ font-size: .8em; color: #555; }} table {{ border-collapse: collapse; font-size: .8em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; }} @media print {{ h3 {{ page-break-before: auto; }} }}
</style></head><body>
<p class="notice">{RESEARCH_NOTICE}</p>
<h1>Case report: {html.escape(patient_id)} {html.escape(institution)}</h1>
<p>Generated {dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")} by brainseg. Threshold {threshold:.3f}.</p>
<h2>Models</h2><ul>{hashes}</ul>
<h2>Summary</h2><ul>{"".join(summary)}</ul>
<h2>Tumor burden across the patient</h2><img style="width: 100%; max-width: 900px" src="{burden}">
<h2>Key slices</h2>{"".join(rows)}
<h2>All slices</h2>{table.to_html(index=False)}
<p>Voxel spacing is not part of the source data; areas are in pixels of the 256x256 slice.</p>
<p class="notice">{RESEARCH_NOTICE}</p>
</body></html>
"""
