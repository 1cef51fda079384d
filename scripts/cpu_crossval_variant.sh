#!/usr/bin/env bash
# A plan variant's whole CPU cross-validation: each fold not yet scored is trained and scored
# (scripts/cpu_crossval_fold.sh, its report committed-ready in models/crossval_cpu_variants/<variant>/), then the
# five are pooled (scripts/cpu_crossval_pool.sh) into models/crossval_variants/<variant>_cpu.json. A fold whose
# report exists is skipped, so a run cut off by a session's end goes on where it stopped. Its rule must be in
# models/ablation_decision.md before the first fold trains.
#
#   nohup bash scripts/cpu_crossval_variant.sh segmenter-spatial_20 > runs/logs/variant.log 2>&1 &
#
# Each fold's log goes to runs/logs/<variant>_fold<F>.log.
set -euo pipefail
export VARIANT=${1:?usage: cpu_crossval_variant.sh VARIANT}
mkdir -p runs/logs
for FOLD in 0 1 2 3 4; do
  if [ -f "models/crossval_cpu_variants/$VARIANT/fold-$FOLD.json" ]; then
    echo "fold $FOLD: already scored"
    continue
  fi
  echo "fold $FOLD: started $(date -u +%FT%TZ)"
  bash "$(dirname "$0")/cpu_crossval_fold.sh" "$FOLD" > "runs/logs/${VARIANT}_fold$FOLD.log" 2>&1
  echo "fold $FOLD: scored $(date -u +%FT%TZ)"
done
bash "$(dirname "$0")/cpu_crossval_pool.sh"
