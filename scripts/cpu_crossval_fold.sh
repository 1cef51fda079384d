#!/usr/bin/env bash
# One fold of the shipped recipe's cross-validation on this 2-core CPU, trained and then scored at once
# (35 to 50 min on a free CPU; tests beside it can double that). Run folders do not outlive a session on these
# machines, so each fold is scored as soon as it is trained, with the shipped slice score and with the
# neighbour-lifted one (models/ablation_decision.md), into models/crossval_cpu/; commit them. Each report keeps its
# counted outputs (per_slice_pixel_counts); once all five folds are in, scripts/cpu_crossval_pool.sh pools them,
# final-fit choices included (README "Cross-validation").
#
# Usage, from the repository root with the project installed in .venv and the data restored:
#   nohup bash scripts/cpu_crossval_fold.sh 2 > runs/logs/fold2.log 2>&1 &
# Resumable: a killed run continues from its last epoch (brainseg.training.train), a finished model is kept.
#
# A variant of the ablation plan (VARIANT=segmenter-empty_0.5, PLAN=models/ablation_plan.json) trains only the
# model it changes, in runs/crossval-cpu-<variant>, the other copied from the shipped recipe's CPU folds
# (runs/crossval-cpu, which must hold this fold's models). It is scored once, with the shipped operating point's
# slice score, paired patient by patient with the shipped recipe's fold report of that score, into
# models/crossval_cpu_variants/<variant>/; scripts/cpu_crossval_pool.sh pools it the same way (VARIANT set).
set -euo pipefail
FOLD=${1:?usage: cpu_crossval_fold.sh FOLD}
BRAINSEG=${BRAINSEG:-.venv/bin/brainseg}
DATA=${DATA:-data/kaggle_3m}
CACHE=${CACHE:-runs/cache128}   # train + val slices at 128x128, exact (brainseg cache-slices)
SHIPPED_CV=runs/crossval-cpu
SHIPPED_REPORTS=models/crossval_cpu
VARIANT=${VARIANT:-}
PLAN=${PLAN:-models/ablation_plan.json}
export PYTHONUNBUFFERED=1
[ -d "$CACHE" ] || "$BRAINSEG" cache-slices --data "$DATA" --out "$CACHE"
if [ -z "$VARIANT" ]; then
  CV=${CV:-$SHIPPED_CV}
  REPORTS=${REPORTS:-$SHIPPED_REPORTS}
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
  # shellcheck source=scripts/shipped_score.sh
  source "$(dirname "$0")/shipped_score.sh"
  BASELINE="$SHIPPED_REPORTS/fold-$FOLD$(shipped_score_suffix).json"
  variant=(--variant "$VARIANT" --plan "$PLAN")
  mkdir -p "$REPORTS"
  "$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage folds "${variant[@]}"
  "$BRAINSEG" crossval --data "$CACHE" --out "$CV" --stage train --fold "$FOLD" "${variant[@]}" \
      --reuse-from "$SHIPPED_CV"
  "$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage evaluate --fold "$FOLD" "${variant[@]}" \
      --report "$REPORTS/fold-$FOLD.json" --compare-to "$BASELINE"
fi
