"""Static figures written to PNG by the command line (training curves)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import pandas as pd


def plot_training_curves(history_csv: str | Path, out_png: str | Path, model: str) -> Path:
    """The seed's figures: loss with accuracy (classifier) or loss with Tversky index (segmenter)."""
    history = pd.read_csv(history_csv)
    epochs = history["epoch"] + 1
    second = "accuracy" if model == "classifier" else "tversky_index"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", second), strict=True):
        ax.plot(epochs, history[metric], label="train")
        if f"val_{metric}" in history and history[f"val_{metric}"].notna().any():  # a final fit has none
            ax.plot(epochs, history[f"val_{metric}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    final_fit = f"val_{second}" in history and history[f"val_{second}"].isna().all()
    fig.suptitle(f"{model} training" + (" (final fit on train + val: no validation curve)" if final_fit else ""))
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
