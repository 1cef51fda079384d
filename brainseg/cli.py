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

from brainseg.core.loss_names import SEGMENTATION_LOSSES, TVERSKY_OVER
from brainseg.errors import BrainsegError, DataError
from brainseg.inference.cascade import SLICE_SCORES
from brainseg.runtime import import_tensorflow_quietly
from brainseg.settings import RUNTIMES, configured_models_dir

# $BRAINSEG_MODELS_DIR, else the checkout's models/ (a `pip install .` has none: load errors then name the variable)
DEFAULT_MODELS_DIR = configured_models_dir()


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
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--input-size", type=positive_int)
    p.add_argument("--width", type=float)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--loss", choices=SEGMENTATION_LOSSES,
                   help="segmenter loss (default: the recipe's, focal Tversky)")
    p.add_argument("--tversky-alpha", type=float, help="focal Tversky weight of missed pixels (cpu recipe: 0.5)")
    p.add_argument("--tversky-over", choices=TVERSKY_OVER,
                   help="focal Tversky: one index over the whole batch (recipes' default) or one per slice, averaged")
    p.add_argument("--empty-fraction", type=float,
                   help="segmenter: tumor-free slices trained on, as a share of the tumor slices (cpu recipe: 0.25)")
    p.add_argument("--deep-supervision-levels", type=int, choices=[0, 1, 2, 3],
                   help="segmenter: coarser decoder stages that also predict the mask in training (deep supervision; "
                   "0, the recipes' default: off); the network saved and run is the same")
    p.add_argument("--fit-on", choices=["train", "train+val"],
                   help="'train' (default): validation picks the checkpoint; 'train+val': a final fit, which needs "
                   "--stop-epoch")
    p.add_argument("--stop-epoch", type=positive_int,
                   help="stop after this many epochs of the recipe's schedule (a final fit's fixed epoch count)")
    p.add_argument("--run-name", help="run folder name under --runs-dir (default: <model>-<recipe>; with 'both', "
                   "<run-name>-<model>)")
    p.add_argument("--limit-slices", type=positive_int, help="cap train/val slices (smoke tests only)")
    p.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2],
                   help="0 silent, 1 progress bar per epoch, 2 one line per epoch (for log files)")
    from brainseg.training.distribute import STRATEGIES  # light: TensorFlow is imported only when training

    p.add_argument("--strategy", default="default", choices=STRATEGIES,
                   help="tf.distribute: 'mirrored' on this host's GPUs, 'multiworker' on the hosts TF_CONFIG names; "
                   "--batch-size stays the global batch, split across the replicas")


def _run_train(args: argparse.Namespace) -> int:
    from brainseg.training.distribute import is_chief
    from brainseg.training.train import config_with_overrides, export_model, recipe, train

    models = ["classifier", "segmenter"] if args.model == "both" else [args.model]
    for model in models:
        config = config_with_overrides(
            recipe(model, args.recipe), epochs=args.epochs, batch_size=args.batch_size,
            input_size=args.input_size, width=args.width, learning_rate=args.learning_rate, seed=args.seed,
            loss=args.loss if model == "segmenter" else None,
            tversky_alpha=args.tversky_alpha if model == "segmenter" else None,
            tversky_over=args.tversky_over if model == "segmenter" else None,
            empty_fraction=args.empty_fraction if model == "segmenter" else None,
            deep_supervision_levels=args.deep_supervision_levels if model == "segmenter" else None,
            fit_on=args.fit_on, stop_epoch=args.stop_epoch,
        )
        # Two models in one run folder would mix their runs (the second is refused): 'both' gives each its own.
        if args.run_name is None:
            run_name = f"{model}-{args.recipe}"
        else:
            run_name = f"{args.run_name}-{model}" if args.model == "both" else args.run_name
        run_dir = args.runs_dir / run_name
        print(f"training {model} ({args.recipe} recipe) in {run_dir}", flush=True)
        train(config, args.data, args.split_file, run_dir, verbose=args.verbose, limit_slices=args.limit_slices,
              strategy=args.strategy)
        if args.export_dir is not None and is_chief(args.strategy):  # one export per cluster
            path = export_model(run_dir, args.export_dir / f"{model}.keras")
            print(f"exported {path}", flush=True)
    return 0


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="make the patient-level train/val/test split file")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR / "split.json",
                   help="split file to write (default: the one the shipped models were trained on)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out split file")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"))


def _run_split(args: argparse.Namespace) -> int:
    from brainseg.core.data import load_dataset
    from brainseg.core.split import check_fractions, make_split, save_split

    # The default --out is the split the shipped models were trained on: never replaced by accident.
    if args.out.exists() and not args.overwrite:
        raise DataError(f"{args.out} exists (a split models may have been trained on); give --overwrite to replace "
                        "it, or another --out")
    check_fractions(tuple(args.fractions))  # before the folder scan
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
    from brainseg.core.data import load_dataset

    manifest, patients = load_dataset(args.data, progress=True)
    if args.out:
        manifest.to_csv(args.out, index=False)
    summary = {
        "patients": len(patients),
        "slices": len(manifest),
        "tumor_slices": int(manifest["has_tumor"].sum()),
        "institutions": patients["institution"].value_counts().sort_index().to_dict(),
    }
    print(json.dumps(summary))
    return 0


def _add_data_args(p: argparse.ArgumentParser, default_split: str = "all") -> None:
    p.add_argument("--data", required=True, type=Path, help="Kaggle-layout folder (kaggle_3m)")
    p.add_argument("--split", default=default_split, choices=["all", "train", "val", "test", "train+val"],
                   help=f"which patients (default: {default_split})")
    p.add_argument("--split-file", type=Path, default=DEFAULT_MODELS_DIR / "split.json")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)


def _select(args: argparse.Namespace):
    from brainseg.core.data import scan_dataset
    from brainseg.core.split import load_split, select_part

    manifest = scan_dataset(args.data, progress=True)
    split = load_split(args.split_file) if args.split != "all" else None
    return select_part(manifest, split, args.split)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="slice, patient and segmentation metrics of the cascade -> JSON + text")
    _add_data_args(p)
    p.add_argument("--out", type=Path, required=True, help="report JSON; a .txt summary is written beside it")
    p.add_argument("--threshold", type=float, help="slice gate (default: models/operating_point.json)")
    p.add_argument("--store", type=Path, help="prediction store: read stored outputs (patients missing from it are "
                   "scored into it first), see `brainseg score`")


def _run_evaluate(args: argparse.Namespace) -> int:
    from brainseg.evaluation.evaluate import evaluate, format_report
    from brainseg.inference.cascade import Cascade
    from brainseg.inference.store import PredictionStore

    if args.out.suffix.lower() == ".txt":  # the text summary goes to --out with .txt: it would replace the JSON
        raise DataError(f"--out {args.out}: the report is JSON and its text summary is written beside it as .txt; "
                        "give --out a .json name")
    manifest = _select(args)
    cascade = Cascade.from_dir(args.models_dir)
    store = PredictionStore(args.store) if args.store else None
    report = evaluate(cascade, manifest, threshold=args.threshold, progress=True, store=store)
    report["data"] = {"folder": str(args.data), "split": args.split, "split_file": str(args.split_file)}
    report["models"] = {m.role: {"file": m.path.name, "sha256": m.sha256}
                        for m in (cascade.classifier, cascade.segmenter)}
    _write_json(report, args.out)
    text = format_report(report)
    args.out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="fill a prediction store with the cascade's outputs (resumable; local or Ray)",
                       description="Run the cascade on every patient the store lacks (or holds for other models or "
                       "changed slices) and store its outputs; patients already stored are skipped.")
    _add_data_args(p)
    p.add_argument("--store", type=Path, required=True, help="prediction store folder (created if missing)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: the cascade in this process; ray: Ray Data with an actor pool (default: local)")
    p.add_argument("--ray-address", help="Ray cluster to run on (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--actors", type=positive_int,
                   help="ray: at most this many model-holding actors (default: one per CPU)")
    p.add_argument("--num-cpus", type=positive_int, help="ray: CPUs of a local Ray (default: all of this machine)")
    p.add_argument("--batch-size", type=positive_int, default=16)


def _run_score(args: argparse.Namespace) -> int:
    from brainseg.inference.store import PredictionStore
    from brainseg.scoring.engines import score_folder

    store = PredictionStore(args.store)  # a bad store path fails before the folder scan
    summary = score_folder(_select(args), store, args.models_dir, engine=args.engine,
                           batch_size=args.batch_size, ray_address=args.ray_address, num_cpus=args.num_cpus,
                           actors=args.actors)
    print(json.dumps(summary.to_dict()))
    return 0


def sensitivity_target(text: str) -> float:
    """A target sensitivity in (0, 1]: refused before any data is read or model run."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: '{text}'") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive_int(text: str) -> int:
    """A count or size of at least 1: refused by argparse before any data is read or model run."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _add_operating_point(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("operating-point", help="choose the default threshold, mask cut and post-processing on val")
    _add_data_args(p, default_split="val")
    p.add_argument("--target-sensitivity", type=sensitivity_target, default=0.97)
    p.add_argument("--no-postprocessing", action="store_true",
                   help="keep the mask cut at 0.5 and no small-component removal")
    p.add_argument("--slice-score", choices=SLICE_SCORES, default="classifier+segmenter",
                   help="what the gate thresholds: the classifier's P(tumor), its mean with the segmenter's peak "
                        "pixel probability (default; chosen by the ablation), or that raised to its neighbouring "
                        "slices' mean when higher")


def _validation_outputs(args: argparse.Namespace, what: str):
    from brainseg.evaluation.operating_point import collect_outputs, refuse_test_split, refuse_trained_on
    from brainseg.inference.cascade import Cascade

    refuse_test_split(args.split, what)
    refuse_trained_on(args.models_dir, args.split, what)
    manifest = _select(args)
    outputs = collect_outputs(Cascade.from_dir(args.models_dir), manifest, progress=True)
    chosen_on = {"split": args.split, "n_patients": int(manifest["patient_id"].nunique()), "n_slices": len(manifest)}
    return outputs, chosen_on


def _run_operating_point(args: argparse.Namespace) -> int:
    from brainseg.evaluation.operating_point import choose_operating_point, save_operating_point

    outputs, chosen_on = _validation_outputs(args, "the operating point")
    point = choose_operating_point(outputs, args.target_sensitivity, chosen_on,
                                   tune_postprocessing=not args.no_postprocessing, slice_score=args.slice_score)
    save_operating_point(point, args.models_dir)
    print(json.dumps({k: v for k, v in point.items() if k != "postprocessing_grid"}, indent=2, default=float))
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit temperature scaling of the gate's slice score on the validation split")
    _add_data_args(p, default_split="val")


def _run_calibrate(args: argparse.Namespace) -> int:
    from brainseg.evaluation.calibration import calibrate

    outputs, chosen_on = _validation_outputs(args, "the temperature")
    from brainseg.inference.cascade import read_operating_point

    slice_score = read_operating_point(args.models_dir).get("slice_score", "classifier")
    record = calibrate(outputs.labels, outputs.scores(slice_score), {**chosen_on, "slice_score": slice_score},
                       args.models_dir)
    print(json.dumps(record, indent=2))
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="cascade speed: ms per slice, seconds per patient, load time, memory")
    _add_data_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-patients", type=positive_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="timed runs per patient and of the reference (median)")
    p.add_argument("--reference-size", type=positive_int, default=256,
                   help="input size of the seed ResUNet reference workload (256: the documented one)")
    p.add_argument("--compare-runtime", action="append", default=[], choices=RUNTIMES,
                   help="also time the cascade on this runtime, in the same rounds (repeatable); the cascade itself "
                   "runs on $BRAINSEG_RUNTIME (default onnxruntime)")


def _run_bench(args: argparse.Namespace) -> int:
    from brainseg.evaluation.bench import bench

    result = bench(args.models_dir, _select(args), max_patients=args.max_patients, batch_size=args.batch_size,
                   repeats=args.repeats, reference_size=args.reference_size,
                   compare_runtimes=tuple(args.compare_runtime))
    _write_json(result, args.out)
    print(json.dumps({k: result[k] for k in ("patient_over_reference", "reference_seconds", "ms_per_slice",
                                             "patient_seconds", "model_load_seconds_cold", "peak_rss_mb")},
                     indent=2))
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="masks (PNG + TIFF, on each input's own grid) and a CSV of probabilities "
                       "for slices or a patient, or a NIfTI / DICOM study (--flair)")
    p.add_argument("inputs", nargs="*", type=Path, help="image files and/or folders (e.g. a patient folder); each "
                   "mask is written at its image's own size, upright as viewers show it (Orientation tag applied)")
    p.add_argument("--flair", type=Path, help="a study instead: FLAIR as a NIfTI file or a DICOM series folder; "
                   "writes mask.nii.gz in its grid, seg.dcm (DICOM) and summary.json")
    p.add_argument("--pre", type=Path, help="with --flair: the pre-contrast sequence (default: FLAIR in its place)")
    p.add_argument("--post", type=Path, help="with --flair: the post-contrast sequence (default: FLAIR in its place)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--threshold", type=float, help="slice gate (default: models/operating_point.json)")


def _run_predict(args: argparse.Namespace) -> int:
    from brainseg.inference.cascade import Cascade
    from brainseg.inference.predict import predict_files

    if (args.flair is None) == (not args.inputs) or (args.flair is None and (args.pre or args.post)):
        raise BrainsegError("give either slice files/folders or --flair (with optional --pre/--post), not both")
    cascade = Cascade.from_dir(args.models_dir)
    threshold = cascade.default_threshold if args.threshold is None else args.threshold
    if args.flair is not None:
        from brainseg.studies.outputs import predict_study_files

        summary = predict_study_files(cascade, args.flair, args.pre, args.post, args.out, threshold, progress=True)
        for warning in summary["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{len(summary['slices'])} slices, {summary['slices_called_tumor']} called tumor at threshold "
              f"{threshold:.3f}; tumor volume {summary['tumor_volume_ml']:.2f} mL; "
              f"{', '.join(f for f in summary['outputs'].values() if f)} and summary.json in {args.out}")
        return 0
    table, refused = predict_files(cascade, args.inputs, args.out, threshold)
    skipped = f"; {len(refused)} refused (see refused.csv)" if refused else ""
    print(f"{len(table)} slices, {int(table['tumor_called'].sum())} called tumor at threshold {threshold:.3f}; "
          f"masks and predictions.csv in {args.out}{skipped}")
    return 0


def _add_model_card(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model-card", help="evaluate + bench the shipped models and write models/MODEL_CARD.md")
    p.add_argument("--data", type=Path, help="Kaggle-layout folder holding the test-split patients (required unless "
                   "--reread-records)")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--readme", type=Path, default=None,
                   help="also rewrite this README's results section (e.g. README.md)")
    p.add_argument("--bench-patients", type=positive_int, default=14, help="test patients timed by the benchmark")
    p.add_argument("--reference-size", type=positive_int, default=256,
                   help="input size of the seed ResUNet reference workload (256: the documented one)")
    p.add_argument("--no-train-steps", action="store_true", help="skip timing the recipes' training steps")
    p.add_argument("--reread-records", action="store_true",
                   help="keep the last run's measurements (model_card.json) and only read the records beside the "
                   "weights again (decision record, ablation, cross-validations, network cost); refused if the "
                   "weights, operating point or temperature changed since")


def _run_model_card(args: argparse.Namespace) -> int:
    from brainseg.reports.card_markdown import RESULTS_END, RESULTS_START
    from brainseg.reports.model_card import collect_card, reread_records, update_readme, write_card

    # An explicit --readme that cannot be updated is refused before the long measurements, not ignored after.
    if args.readme is not None:
        if not args.readme.is_file():
            raise DataError(f"--readme {args.readme}: file not found")
        text = args.readme.read_text()
        if RESULTS_START not in text or RESULTS_END not in text:
            raise DataError(f"--readme {args.readme}: no results section markers ({RESULTS_START} ... {RESULTS_END})")
    if args.reread_records:
        card = reread_records(json.loads((args.models_dir / "model_card.json").read_text()), args.models_dir)
    elif args.data is None:
        raise DataError("model-card needs --data (the Kaggle-layout folder holding the test split) to measure the "
                        "models; only --reread-records works without it")
    else:
        card = collect_card(args.data, args.models_dir, bench_patients=args.bench_patients,
                            reference_size=args.reference_size, train_steps=not args.no_train_steps)
    write_card(card, args.models_dir)
    if args.readme is not None and not update_readme(args.readme, card):
        raise DataError(f"--readme {args.readme}: its results section could not be rewritten")
    print(f"wrote {args.models_dir / 'MODEL_CARD.md'} (test cascade Dice/volume mean "
          f"{card['test']['cascade']['dice_per_volume']['mean']:.4f})")
    return 0


def _add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="train (if missing) and score every variant of the ablation plan on val")
    p.add_argument("--data", required=True, type=Path, help="Kaggle-layout folder (kaggle_3m)")
    p.add_argument("--plan", type=Path, default=DEFAULT_MODELS_DIR / "ablation_plan.json")
    p.add_argument("--split-file", type=Path, default=DEFAULT_MODELS_DIR / "split.json")
    p.add_argument("--runs-dir", type=Path, default=Path("runs") / "ablation")
    p.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR / "ablation.json")
    p.add_argument("--no-train", action="store_true",
                   help="score only what is trained; variants whose runs are incomplete are listed as not scored")


def _run_ablate(args: argparse.Namespace) -> int:
    from brainseg.experiments.ablation import load_plan, run_ablation
    from brainseg.reports.card_markdown import ablation_markdown

    try:
        plan = load_plan(args.plan)
    except (ValueError, KeyError, json.JSONDecodeError) as err:
        raise BrainsegError(f"{args.plan}: not a valid ablation plan ({err})") from err
    result = run_ablation(plan, args.data, args.split_file, args.runs_dir, train=not args.no_train)
    result["command"] = "brainseg " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["ablate"] else "brainseg ablate"
    result["plan"] = json.loads(args.plan.read_text())
    _write_json(result, args.out)
    print("\n".join(ablation_markdown(result)))
    return 0


def _add_crossval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crossval", help="patient-level k-fold cross-validation of the shipped recipe (train + val)",
                       description="Stages: 'folds' writes the folds, 'train' trains each fold's two models "
                       "(resumable; runs on Keras' JAX backend too, e.g. on a GPU machine), 'evaluate' scores "
                       "every patient with the fold that held it out; 'all' runs the three in turn. 'combine' pools "
                       "reports of separately scored folds (--fold-report) into one, with the same figures as "
                       "scoring those folds together.")
    p.add_argument("--data", type=Path,
                   help="Kaggle-layout folder, or for 'train' a slice cache (brainseg cache-slices); every stage "
                        "but 'combine' needs it")
    p.add_argument("--split-file", type=Path, default=DEFAULT_MODELS_DIR / "split.json")
    p.add_argument("--out", type=Path, default=Path("runs") / "crossval")
    p.add_argument("--folds", type=positive_int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--stage", choices=["folds", "train", "evaluate", "all", "combine"], default="all")
    p.add_argument("--fold", type=int, action="append",
                   help="train or evaluate only these folds (repeatable; default all). An evaluation of some folds is "
                   "marked partial, makes no final-fit choices and needs its own --report")
    p.add_argument("--role", choices=["classifier", "segmenter"], action="append",
                   help="train only this model of each fold (repeatable; default both)")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                   help="whose operating point (target sensitivity, slice score) the folds reproduce")
    p.add_argument("--slice-score", choices=SLICE_SCORES,
                   help="'evaluate': gate on this slice score instead of the --models-dir operating point's (a screen "
                        "of the score; each fold's threshold is still chosen on its inner validation patients)")
    p.add_argument("--report", type=Path, default=DEFAULT_MODELS_DIR / "crossval.json")
    p.add_argument("--variant", help="cross-validate this run of the ablation plan instead of the shipped recipe "
                   "(its model trains with the run's overrides; use a new --out and --report)")
    p.add_argument("--plan", type=Path, default=DEFAULT_MODELS_DIR / "ablation_plan.json")
    p.add_argument("--reuse-from", type=Path,
                   help="'train': copy the models the variant does not change from this cross-validation's folds")
    p.add_argument("--compare-to", type=Path, action="append",
                   help="'evaluate': add a paired out-of-fold comparison with this report (e.g. models/crossval.json); "
                   "repeatable: the first is 'paired_against', the others 'also_paired_against'")
    p.add_argument("--ensemble-with", type=Path, action="append",
                   help="'evaluate': average each fold's segmenter maps with this cross-validation's (same folds; "
                   "repeatable): the ensemble is scored as one segmenter, with its own operating point per fold")
    p.add_argument("--fold-report", type=Path, action="append",
                   help="'combine': a report of some folds (evaluate --fold ... --report); repeatable")
    p.add_argument("--epochs", type=positive_int, help=argparse.SUPPRESS)  # tests only: both models' epoch count


def _run_crossval(args: argparse.Namespace) -> int:
    from brainseg.experiments import crossval

    writes_report = args.stage in ("evaluate", "all", "combine")
    if args.variant and (args.out == Path("runs") / "crossval"
                         or (writes_report and args.report == DEFAULT_MODELS_DIR / "crossval.json")):
        raise DataError("a variant's cross-validation needs its own --out and, to be scored, its own --report (the "
                        "defaults hold the shipped recipe's)")
    if args.fold and args.stage in ("evaluate", "all") and args.report == DEFAULT_MODELS_DIR / "crossval.json":
        raise DataError("an evaluation of some folds is partial: give it its own --report (the default holds the "
                        "shipped recipe's complete one)")
    if args.stage == "combine":
        if not args.fold_report:
            raise DataError("'combine' pools fold reports: give them with --fold-report")
        if args.report == DEFAULT_MODELS_DIR / "crossval.json":
            raise DataError("a combined report needs its own --report (the default holds the cross-validation the "
                            "shipped models' choices came from)")
    elif args.data is None:
        raise DataError(f"--stage {args.stage} needs --data")
    elif args.fold_report:
        raise DataError("--fold-report is for --stage combine")
    if args.ensemble_with and (args.stage not in ("evaluate", "all")
                               or args.report == DEFAULT_MODELS_DIR / "crossval.json"):
        raise DataError("--ensemble-with scores an ensemble: it is for --stage evaluate, with its own --report (the "
                        "default holds the shipped recipe's)")
    point, baselines, fold_reports = {}, [], []
    if args.stage in ("evaluate", "all"):
        # Read before any training or evaluation: a missing or broken file must not end a long run.
        point = _read_json(args.models_dir / "operating_point.json", "operating point")
        shipped_score = str(point.get("slice_score", "classifier"))
        if (args.slice_score not in (None, shipped_score)
                and args.report == DEFAULT_MODELS_DIR / "crossval.json"):
            raise DataError(f"--slice-score {args.slice_score} screens another slice score than the models' "
                            f"({shipped_score}): give it its own --report (the default holds the shipped recipe's)")
    if args.stage == "combine":
        fold_reports = _read_crossval_reports(args.fold_report, "--fold-report")
    baselines = _read_crossval_reports(args.compare_to or [], "--compare-to report")
    if args.stage in ("folds", "all"):
        document = crossval.write_folds(args.split_file, args.out, args.folds, args.seed)
        print(f"{document['k']} folds over {document['n_patients']} patients in {args.out}")
    if args.stage in ("train", "all"):
        overrides = None if args.epochs is None else {"epochs": args.epochs}
        changed = crossval.variant_overrides(args.plan, args.variant) if args.variant else {}
        for fold in args.fold or range(len(crossval.read_folds(args.out)["folds"])):
            roles = tuple(args.role or ("classifier", "segmenter"))
            if args.reuse_from is not None:  # the models the variant leaves alone come from the baseline's folds
                for role in [r for r in roles if r not in changed]:
                    print(f"fold {fold}: reused {crossval.reuse_models(args.reuse_from, args.out, fold, role)}")
                roles = tuple(r for r in roles if r in changed)
            models = crossval.train_fold(args.data, args.out, fold, overrides, roles=roles, role_overrides=changed)
            print(f"fold {fold}: models in {models}")
    if args.stage == "combine":
        fold_reports.sort(key=lambda item: item[1].get("folds_scored", []))
        report = crossval.combine_reports([fold_report for _, fold_report in fold_reports])
        for source, (path, _) in zip(report["combined_from"], fold_reports, strict=True):
            source["report"] = str(path)
    elif args.stage in ("evaluate", "all"):
        slice_score = args.slice_score or str(point.get("slice_score", "classifier"))
        report = crossval.evaluate_folds(args.data, args.out, float(point["target_sensitivity"]), slice_score,
                                         progress=True, folds=args.fold, ensemble_with=args.ensemble_with or ())
        if args.variant:
            report["variant"] = crossval.variant_record(args.plan, args.variant)
    else:
        return 0
    report["command"] = "brainseg " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["crossval"] else \
        "brainseg crossval"
    _finish_crossval_report(report, args.report, baselines)
    return 0


def _read_crossval_reports(paths: list[Path], what: str) -> list[tuple[Path, dict]]:
    reports = [(path, _read_json(path, what)) for path in paths]
    for path, report in reports:
        if not isinstance(report, dict) or "per_patient" not in report:
            raise DataError(f"{path}: not a cross-validation report (no per_patient)")
    return reports


def _finish_crossval_report(report: dict, path: Path, baselines: list[tuple[Path, dict]]) -> None:
    """Write a cross-validation report, then pair it with each baseline report and print the figures."""
    from brainseg.experiments import crossval

    _write_json(report, path)  # kept even if a comparison below fails
    comparisons = [{"report": str(baseline_path), **crossval.paired_comparison(report, baseline)}
                   for baseline_path, baseline in baselines]
    if comparisons:
        report["paired_against"] = comparisons[0]
    if len(comparisons) > 1:
        report["also_paired_against"] = comparisons[1:]
    if comparisons:
        _write_json(report, path)
    f, ci = report["figures"], report["confidence_intervals"]
    dice = ci.get("cascade_dice_per_volume_mean", {})
    partial = f" (partial: folds {report['folds_scored']} of {report['k']})" if report["partial"] else ""
    print(f"out-of-fold{partial}, {report['n_patients']} patients: cascade Dice/volume mean "
          f"{f['cascade_dice_per_volume']['mean']:.3f} [{dice.get('low', float('nan')):.3f}, "
          f"{dice.get('high', float('nan')):.3f}], pooled ROC AUC {f['roc_auc_pooled']:.4f}; "
          f"wrote {path}")
    if "final_fit_choices" in report:
        chosen = report["final_fit_choices"]["operating_point"]
        print(f"final-fit choices on the pooled out-of-fold outputs: gate {chosen['threshold']} on the "
              f"'{chosen['slice_score']}' score, mask cut {chosen['mask_threshold']}, components under "
              f"{chosen['min_component_pixels']} pixels removed")
    elif not report["partial"]:
        print("no final-fit choices: some fold reports predate their counted outputs (per_slice_pixel_counts)")
    for paired in comparisons:
        ci = paired["confidence_interval"]
        print(f"against {paired['report']}: {paired['mean_difference']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] "
              f"(paired over {paired['n_patients']} patients; {paired['better']} better, {paired['worse']} worse)")
        if "segmenter_alone" in paired:
            alone = paired["segmenter_alone"]
            ci = alone["confidence_interval"]
            print(f"  segmenter alone (no gate): {alone['mean_difference']:+.3f} [{ci['low']:+.3f}, "
                  f"{ci['high']:+.3f}]; a patient moves by {paired['mean_absolute_difference']:.3f} on average")
        if "roc_auc_pooled" in paired:
            auc = paired["roc_auc_pooled"]
            ci = auc["confidence_interval"]
            print(f"  pooled slice ROC AUC {auc['value']:.4f} vs {auc['baseline']:.4f}: {auc['difference']:+.4f} "
                  f"[{ci['low']:+.4f}, {ci['high']:+.4f}]")
        for role, folds in paired.get("same_weights", {}).items():
            print(f"  {role} weights as the baseline's: "
                  + ", ".join(f"fold {fold} {'same' if same else 'DIFFERENT'}" for fold, same in folds.items()))


def _add_final_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("final-fit", help="train both models on train + val with the cross-validation's epoch counts, "
                       "operating point and temperature (resumable)",
                       description="The shipped recipe on all train + validation patients. With no validation "
                       "patients left, each model stops at the median of the folds' best epochs and the operating "
                       "point and temperature are those chosen on the pooled out-of-fold outputs; all three come "
                       "from the cross-validation report (brainseg crossval). The test split is not used.")
    p.add_argument("--data", type=Path, help="Kaggle-layout folder, or a slice cache (needed unless --choices-only)")
    p.add_argument("--split-file", type=Path, default=DEFAULT_MODELS_DIR / "split.json")
    p.add_argument("--crossval", type=Path, default=DEFAULT_MODELS_DIR / "crossval.json",
                   help="cross-validation report holding final_fit_choices")
    p.add_argument("--choices-only", action="store_true",
                   help="train nothing: write the report's operating point and temperature beside the final-fit "
                        "models already in --export-dir (e.g. a slice score adopted after they were trained)")
    p.add_argument("--only", choices=["classifier", "segmenter"],
                   help="retrain this model alone (e.g. after a variant of it is adopted); the other must be a final "
                        "fit in --export-dir already and stays as it is")
    p.add_argument("--runs-dir", type=Path, default=Path("runs") / "final-fit")
    p.add_argument("--export-dir", type=Path, default=DEFAULT_MODELS_DIR,
                   help="where the models, operating_point.json and calibration.json go")
    p.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    p.add_argument("--epochs", type=positive_int, help=argparse.SUPPRESS)  # tests only: the schedule's length
    p.add_argument("--limit-slices", type=positive_int, help=argparse.SUPPRESS)  # tests only


def _run_final_fit(args: argparse.Namespace) -> int:
    from brainseg.experiments.final_fit import ROLES, run_final_fit

    if args.choices_only:
        from brainseg.experiments.final_fit import apply_choices

        point = apply_choices(args.crossval, args.export_dir, args.split_file)["operating_point"]
        print(f"final fit in {args.export_dir}: operating point (gate {point['threshold']} on the "
              f"'{point['slice_score']}' score) and temperature from {args.crossval}; models unchanged", flush=True)
        return 0
    if args.data is None:
        raise DataError("final-fit trains the models: give --data (or --choices-only to write the choices alone)")
    overrides = {"epochs": args.epochs} if args.epochs is not None else None
    roles = (args.only,) if args.only else ROLES
    out = run_final_fit(args.data, args.split_file, args.crossval, args.runs_dir, args.export_dir,
                        verbose=args.verbose, overrides=overrides, limit_slices=args.limit_slices, roles=roles)
    print(f"final fit: models, operating point and temperature in {out}", flush=True)
    return 0


def _add_cache_slices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache-slices", help="write a compact, exact copy of the slices at one input size "
                       "(to train elsewhere, e.g. on a GPU machine)")
    p.add_argument("--data", required=True, type=Path, help="Kaggle-layout folder (kaggle_3m)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--size", type=positive_int, default=128)
    p.add_argument("--split-file", type=Path, default=DEFAULT_MODELS_DIR / "split.json")
    p.add_argument("--parts", default="train,val", help="split parts to include, comma-separated, or 'all'")


def _run_cache_slices(args: argparse.Namespace) -> int:
    from brainseg.core.data import load_dataset
    from brainseg.core.slice_cache import write_slice_cache
    from brainseg.core.split import PARTS, load_split

    parts = [part.strip() for part in args.parts.split(",")]
    if args.parts != "all" and any(part not in PARTS for part in parts):  # before the folder scan
        unknown = next(part for part in parts if part not in PARTS)
        raise DataError(f"--parts: unknown split part '{unknown}' (choose from {', '.join(PARTS)}, comma-separated, "
                        "or 'all')")
    manifest, _ = load_dataset(args.data)
    if args.parts != "all":
        split = load_split(args.split_file)
        keep = {p for part in parts for p in split[part]}
        manifest = manifest[manifest["patient_id"].isin(keep)]
    write_slice_cache(manifest, args.size, args.out, progress=True)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"{len(manifest)} slices of {manifest['patient_id'].nunique()} patients at {args.size}x{args.size} "
          f"in {args.out} ({size / 1e6:.1f} MB)")
    return 0


def _add_ui_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui-report", help="write the README's dashboard timings from the browser tests' artifacts")
    p.add_argument("--artifacts", type=Path, default=Path("test-artifacts"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))


def _run_ui_report(args: argparse.Namespace) -> int:
    from brainseg.reports.ui_report import update_readme_ui

    print(update_readme_ui(args.readme, args.artifacts))
    return 0


def _add_corrections(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corrections", help="reviewers' mask corrections: export them to train on or to view")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="latest version per slice: Kaggle layout (+ corrections.json) and NIfTI",
                           description="Write <out>/kaggle_3m/<case>/<case>_<n>.tif + _mask.tif and "
                           "<out>/nifti/<case>.nii.gz from the review store ($BRAINSEG_REVIEW_DB); with --format "
                           "kaggle or nifti alone, <out>/<case>/... or <out>/<case>.nii.gz.")
    e.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    e.add_argument("--data", type=Path, action="append",
                   help="folder(s) holding the original slices (default: the dashboard's data folders)")
    e.add_argument("--format", choices=["kaggle", "nifti", "both"], default="both")
    e.add_argument("--patient", action="append", help="only these patients (repeatable)")
    e.add_argument("--review-db", help="a SQLite file or SQLAlchemy URL (default: $BRAINSEG_REVIEW_DB or the "
                   "user's data folder)")


def _run_corrections(args: argparse.Namespace) -> int:
    from brainseg import settings
    from brainseg.review.corrections import export_kaggle, export_nifti
    from brainseg.review.review_log import ReviewLog

    # Into a folder holding an earlier export, the two would mix (and corrections.json list only the last).
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise DataError(f"{args.out} exists and is not an empty folder; choose a new --out for the export")
    log = ReviewLog(args.review_db or settings.review_db())
    folders = args.data or [settings.default_data_dir(), *settings.data_folder_choices()]
    summary = {}
    if args.format in ("kaggle", "both"):
        out = args.out / "kaggle_3m" if args.format == "both" else args.out
        summary["kaggle_slices"] = len(export_kaggle(log, out, folders, args.patient, progress=True)["slices"])
        summary["kaggle_dir"] = str(out)
    if args.format in ("nifti", "both"):
        out = args.out / "nifti" if args.format == "both" else args.out
        summary["nifti_cases"] = len(export_nifti(log, out, args.patient)["cases"])
        summary["nifti_dir"] = str(out)
    print(json.dumps(summary))
    return 0


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune the segmenter on corrected slices (+ replay) into a new folder",
                       description="Fine-tune the segmenter of --models-dir on a Kaggle-layout corrections folder "
                       "(`brainseg corrections export`) plus a replay sample of the split's train slices; writes "
                       "a new model folder and its validation Dice before/after (FINETUNE.md).")
    p.add_argument("--corrections", required=True, type=Path, help="Kaggle-layout folder of corrected slices")
    p.add_argument("--data", required=True, type=Path, help="the original Kaggle-layout folder (replay, validation)")
    p.add_argument("--out", required=True, type=Path, help="new model folder (must not exist or be empty)")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR, help="the parent model folder")
    p.add_argument("--split-file", type=Path, help="default: the parent folder's split.json")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--replay-per-correction", type=float, default=4.0,
                   help="replayed training slices per corrected slice (default 4)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])


def _run_finetune(args: argparse.Namespace) -> int:
    from brainseg.experiments.finetune_report import finetune_with_report
    from brainseg.training.finetune import FinetuneConfig

    config = FinetuneConfig(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                            replay_per_correction=args.replay_per_correction, seed=args.seed)
    report = finetune_with_report(args.models_dir, args.corrections, args.data, args.out, config, args.split_file,
                                  args.verbose)
    print(json.dumps({"out": str(args.out), "before": report["before"], "after": report["after"],
                      "corrected_slices": report["provenance"]["corrected_slices"],
                      "replay_slices": report["provenance"]["replay_slices"]}))
    return 0


def _add_resolution_ceiling(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resolution-ceiling", help="Dice a perfect segmenter at each input size could reach "
                       "(expert masks shrunk and brought back as training and inference do) -> JSON",
                       description="No model is run: the expert masks' round trip through the input size bounds "
                       "the Dice per volume of any segmenter working at that size.")
    _add_data_args(p)
    p.add_argument("--size", type=positive_int, action="append", required=True, help="input size (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="report JSON")


def _run_resolution_ceiling(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from brainseg.core.data import load_slices
    from brainseg.evaluation.resolution import resolution_ceiling
    from brainseg.inference.cascade import MASK_THRESHOLD, read_operating_point

    manifest = _select(args)
    operating_point = {"mask_threshold": MASK_THRESHOLD, "min_component_pixels": 0,
                       **read_operating_point(args.models_dir)}  # what the cascade uses when the file is absent
    by_patient = manifest.groupby("patient_id", sort=True)
    patients = ((patient_id, load_slices(part)[1])
                for patient_id, part in tqdm(by_patient, total=by_patient.ngroups, desc="patients", unit="patient"))
    report = resolution_ceiling(patients, args.size, operating_point["mask_threshold"],
                                operating_point["min_component_pixels"])
    report["command"] = (f"brainseg resolution-ceiling --data {args.data} --split {args.split} "
                         + " ".join(f"--size {size}" for size in args.size) + f" --out {args.out}")
    report["data"] = {"folder": str(args.data), "split": args.split, "split_file": str(args.split_file),
                      "operating_point": str(args.models_dir / "operating_point.json")}
    _write_json(report, args.out)
    for key, ceiling in report["ceilings"].items():
        print(f"{key:>14}: Dice per volume {ceiling['dice_per_volume_mean']:.3f} (min "
              f"{ceiling['dice_per_volume_min']:.3f}, {ceiling['worst_patient']}) over {report['n_patients']} "
              "patients with tumor")
    return 0


def _add_network_cost(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("network-cost", help="inference cost of each planned candidate's networks, as a ratio to the "
                       "speed reference, before training it -> JSON",
                       description="Each candidate's networks (random weights) and the speed reference are timed "
                       "interleaved in this process; a candidate's whole patient is estimated from the shipped "
                       "cascade's bench record.")
    p.add_argument("--plan", type=Path, action="append", required=True, help="plan JSON (repeatable)")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--bench", type=Path, default=None,
                   help="the shipped cascade's `brainseg bench` record, for the whole-patient estimates "
                   "(default: bench.json in --models-dir)")
    p.add_argument("--repeats", type=positive_int, default=7, help="interleaved timing rounds (median)")
    p.add_argument("--out", type=Path, required=True, help="report JSON")


def _run_network_cost(args: argparse.Namespace) -> int:
    from brainseg.experiments.network_cost import network_cost

    report = network_cost(args.plan, args.models_dir, args.bench or args.models_dir / "bench.json",
                          repeats=args.repeats)
    report["command"] = ("brainseg network-cost " + " ".join(f"--plan {plan}" for plan in args.plan)
                         + ("" if args.bench is None else f" --bench {args.bench}")
                         + f" --repeats {args.repeats} --out {args.out}")
    _write_json(report, args.out)
    for row in report["rows"]:
        estimate = row["estimated_patient_over_reference"]
        print(f"{row['networks_over_reference']:6.3f}  patient ~{'?' if estimate is None else f'{estimate:.2f}'}"
              f"  {', '.join(row['candidates'])}")
    return 0


def _read_json(path: Path, what: str) -> dict:
    """A JSON file the command needs, as a one-line DataError naming it when missing or broken."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{path}: {what} not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: {what} is not valid JSON ({err})") from err


def _write_json(document: dict, path: Path) -> None:
    from brainseg.core.files import json_text

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_text(document))


COMMANDS = {
    "train": (_add_train, _run_train),
    "evaluate": (_add_evaluate, _run_evaluate),
    "score": (_add_score, _run_score),
    "operating-point": (_add_operating_point, _run_operating_point),
    "calibrate": (_add_calibrate, _run_calibrate),
    "predict": (_add_predict, _run_predict),
    "bench": (_add_bench, _run_bench),
    "model-card": (_add_model_card, _run_model_card),
    "ablate": (_add_ablate, _run_ablate),
    "crossval": (_add_crossval, _run_crossval),
    "final-fit": (_add_final_fit, _run_final_fit),
    "cache-slices": (_add_cache_slices, _run_cache_slices),
    "resolution-ceiling": (_add_resolution_ceiling, _run_resolution_ceiling),
    "network-cost": (_add_network_cost, _run_network_cost),
    "ui-report": (_add_ui_report, _run_ui_report),
    "split": (_add_split, _run_split),
    "scan": (_add_scan, _run_scan),
    "corrections": (_add_corrections, _run_corrections),
    "finetune": (_add_finetune, _run_finetune),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brainseg", description="Brain MRI tumor detection and segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    on_tensorflow = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
    if on_tensorflow and args.command not in ("split", "scan", "ui-report", "corrections"):
        import_tensorflow_quietly()
    try:
        return COMMANDS[args.command][1](args)
    except (BrainsegError, OSError) as err:  # OSError: any file-system failure (missing folder, file in the way)
        print(f"brainseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"brainseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
