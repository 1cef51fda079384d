"""The ``brainseg`` command line: train, evaluate, predict, bench, split, scan.

Every command prints a one-line error and exits with status 2 on bad input (paths, folders, files),
instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from brainseg.errors import BrainsegError

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the classifier, the segmenter, or both (resumable)",
                       description="Train a model on a Kaggle-layout folder with the patient-level split. "
                       "Re-running the same command after an interruption resumes from the last epoch.")
    p.add_argument("model", choices=["classifier", "segmenter", "both"])
    p.add_argument("--data", required=True, type=Path, help="Kaggle-layout folder (kaggle_3m)")
    p.add_argument("--split-file", type=Path, default=DEFAULT_MODELS_DIR / "split.json")
    p.add_argument("--recipe", default="cpu", choices=["cpu", "seed"],
                   help="'cpu': the shipped models (default); 'seed': the seed notebook's exact recipe")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="run folders go here (default: runs/)")
    p.add_argument("--export-dir", type=Path, default=None,
                   help="copy the best checkpoints here as <model>.keras + .json (e.g. models/)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--input-size", type=int)
    p.add_argument("--width", type=float)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--limit-slices", type=int, help="cap train/val slices (smoke tests only)")
    p.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2],
                   help="0 silent, 1 progress bar per epoch, 2 one line per epoch (for log files)")


def _run_train(args: argparse.Namespace) -> int:
    from brainseg.train import config_with_overrides, export_model, recipe, train

    models = ["classifier", "segmenter"] if args.model == "both" else [args.model]
    for model in models:
        config = config_with_overrides(
            recipe(model, args.recipe), epochs=args.epochs, batch_size=args.batch_size,
            input_size=args.input_size, width=args.width, learning_rate=args.learning_rate, seed=args.seed,
        )
        run_dir = args.runs_dir / f"{model}-{args.recipe}"
        print(f"training {model} ({args.recipe} recipe) in {run_dir}", flush=True)
        train(config, args.data, args.split_file, run_dir, verbose=args.verbose, limit_slices=args.limit_slices)
        if args.export_dir is not None:
            path = export_model(run_dir, args.export_dir / f"{model}.keras")
            print(f"exported {path}", flush=True)
    return 0


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="make the patient-level train/val/test split file")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR / "split.json")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"))


def _run_split(args: argparse.Namespace) -> int:
    from brainseg.data import load_dataset
    from brainseg.split import make_split, save_split

    _, patients = load_dataset(args.data)
    split = make_split(patients, tuple(args.fractions), args.seed)
    save_split(split, args.out, args.seed, tuple(args.fractions))
    print(json.dumps({part: len(ids) for part, ids in split.items()}))
    return 0


def _add_scan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="check a Kaggle-layout folder and count patients, slices and tumor slices")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, help="also write the slice manifest as CSV")


def _run_scan(args: argparse.Namespace) -> int:
    from brainseg.data import load_dataset

    manifest, patients = load_dataset(args.data, progress=True)
    if args.out:
        manifest.to_csv(args.out, index=False)
    summary = {
        "patients": int(len(patients)),
        "slices": int(len(manifest)),
        "tumor_slices": int(manifest["has_tumor"].sum()),
        "institutions": patients["institution"].value_counts().sort_index().to_dict(),
    }
    print(json.dumps(summary))
    return 0


COMMANDS = {"train": (_add_train, _run_train), "split": (_add_split, _run_split), "scan": (_add_scan, _run_scan)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brainseg", description="Brain MRI tumor detection and segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the console
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except (BrainsegError, FileNotFoundError, PermissionError, IsADirectoryError) as err:
        print(f"brainseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"brainseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
