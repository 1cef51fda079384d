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
set -euo pipefail
FOLD=${1:?usage: cpu_crossval_fold.sh FOLD}
BRAINSEG=${BRAINSEG:-.venv/bin/brainseg}
DATA=${DATA:-data/kaggle_3m}
CACHE=${CACHE:-runs/cache128}   # train + val slices at 128x128, exact (brainseg cache-slices)
CV=${CV:-runs/crossval-cpu}
REPORTS=${REPORTS:-models/crossval_cpu}
export PYTHONUNBUFFERED=1
mkdir -p "$REPORTS"
[ -d "$CACHE" ] || "$BRAINSEG" cache-slices --data "$DATA" --out "$CACHE"
"$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage folds   # identical folds are kept, others refused
"$BRAINSEG" crossval --data "$CACHE" --out "$CV" --stage train --fold "$FOLD"
"$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage evaluate --fold "$FOLD" \
    --report "$REPORTS/fold-$FOLD.json"
"$BRAINSEG" crossval --data "$DATA" --out "$CV" --stage evaluate --fold "$FOLD" \
    --slice-score classifier+segmenter+neighbours --report "$REPORTS/fold-${FOLD}_neighbour_score.json"
