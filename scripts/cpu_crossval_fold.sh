#!/usr/bin/env bash
# One fold of the shipped recipe's cross-validation on this 2-core CPU, trained and then scored at once (35 to 50 min
# on a free CPU for both models, 18 to 30 min for a variant's one model at 35 epochs, or both where the shipped
# folds' run folder is gone; tests beside it can double that). Run folders do not outlive a session on these
# machines, so each fold is scored as soon as it is trained,
# with the shipped slice score and with the neighbour-lifted one (models/ablation_decision.md), into
# models/crossval_cpu/; commit them. Each report keeps its counted outputs (per_slice_pixel_counts); once all five
# folds are in, scripts/cpu_crossval_pool.sh pools them, final-fit choices included (README "Cross-validation").
#
# Usage, from the repository root with the project installed in .venv and the data restored:
#   nohup bash scripts/cpu_crossval_fold.sh 2 > runs/logs/fold2.log 2>&1 &
# Resumable: a killed run continues from its last epoch (brainseg.training.train), a finished model is kept.
#
# Without VARIANT it cross-validates the recipe into runs/crossval-cpu and models/crossval_cpu, which hold the
# recipe before segmenter-spatial_20 was adopted and are never overwritten (give new CV= and REPORTS=).
#
# A variant of the ablation plan (VARIANT=segmenter-empty_0.5, PLAN=models/ablation_plan.json) trains only the
# model it changes, in runs/crossval-cpu-<variant>, the other copied from the CPU cross-validation the shipped
# operating point was chosen from (scripts/shipped_cpu_crossval.py names its run folder, which must hold this
# fold's models, and its reports). It is scored once, with the shipped operating point's slice score, paired
# patient by patient with that cross-validation's fold report, into models/crossval_cpu_variants/<variant>/;
# scripts/cpu_crossval_pool.sh pools it the same way (VARIANT set).
set -euo pipefail
FOLD=${1:?usage: cpu_crossval_fold.sh FOLD}
BRAINSEG=${BRAINSEG:-.venv/bin/brainseg}
DATA=${DATA:-data/kaggle_3m}
CACHE=${CACHE:-runs/cache128}   # train + val slices at 128x128, exact (brainseg cache-slices)
VARIANT=${VARIANT:-}
PLAN=${PLAN:-models/ablation_plan.json}
export PYTHONUNBUFFERED=1
[ -d "$CACHE" ] || "$BRAINSEG" cache-slices --data "$DATA" --out "$CACHE"   # complete or absent (.partial until done)
if [ -z "$VARIANT" ]; then
  CV=${CV:-runs/crossval-cpu}
  REPORTS=${REPORTS:-models/crossval_cpu}
  if [ -f "$REPORTS/fold-$FOLD.json" ]; then   # a record is never overwritten
    echo "$REPORTS/fold-$FOLD.json exists (models/crossval_cpu holds the recipe before segmenter-spatial_20 was" \
         "adopted): give new CV= and REPORTS= folders to cross-validate the recipe again" >&2
    exit 2
  fi
  mkdir -p "$REPORTS"
  "$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage folds   # identical folds are kept, others refused
  "$BRAINSEG" crossval --data "$CACHE" --out "$CV" --stage train --fold "$FOLD"
  "$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage evaluate --fold "$FOLD" \
      --report "$REPORTS/fold-$FOLD.json"
  "$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage evaluate --fold "$FOLD" \
      --slice-score classifier+segmenter+neighbours --report "$REPORTS/fold-${FOLD}_neighbour_score.json"
else
  CV=${CV:-runs/crossval-cpu-$VARIANT}
  REPORTS=${REPORTS:-models/crossval_cpu_variants/$VARIANT}
  shipped() { python3 "$(dirname "$0")/shipped_cpu_crossval.py" "$@"; }
  BASELINE=$(shipped fold-report "$FOLD")
  SHIPPED_CV=$(shipped run-dir)
  variant=(--variant "$VARIANT" --plan "$PLAN")
  mkdir -p "$REPORTS"
  "$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage folds "${variant[@]}"
  # Run folders do not outlive the machine: when the shipped cross-validation's fold is gone, the model the
  # variant leaves alone is retrained by the same recipe and seed here, and the report's training record shows
  # whether its weights match the baseline fold's (weights_sha256). REUSE_FROM may name another variant's run
  # folder over the same folds that kept them instead.
  REUSE_FROM=${REUSE_FROM:-$SHIPPED_CV}
  reuse=()
  if [ -d "$REUSE_FROM/fold-$FOLD/models" ]; then
    reuse=(--reuse-from "$REUSE_FROM")
  else
    echo "$REUSE_FROM/fold-$FOLD/models is gone: the models the variant leaves alone are retrained" >&2
  fi
  "$BRAINSEG" crossval --data "$CACHE" --out "$CV" --stage train --fold "$FOLD" "${variant[@]}" "${reuse[@]}"
  "$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage evaluate --fold "$FOLD" "${variant[@]}" \
      --report "$REPORTS/fold-$FOLD.json" --compare-to "$BASELINE"
fi
