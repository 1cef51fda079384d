#!/usr/bin/env bash
# Pool the CPU cross-validation's fold reports (scripts/cpu_crossval_fold.sh) into one report per slice score:
# models/crossval_cpu_folds0-4.json (the shipped score) and models/crossval_cpu_folds0-4_neighbour_score.json (the
# neighbour-lifted score, paired against the first). With all five folds' counted outputs in the reports
# (per_slice_pixel_counts), each pooled report also holds the final fit's choices for its score; then
#   .venv/bin/brainseg final-fit --choices-only --crossval models/crossval_cpu_folds0-4_neighbour_score.json
# writes the lifted score's operating point and temperature beside the shipped models (decision record).
#
# With VARIANT set (a plan variant cross-validated by cpu_crossval_fold.sh), its five fold reports are pooled into
# models/crossval_variants/<variant>_cpu.json, paired with the pooled report the shipped operating point was
# chosen from (scripts/shipped_cpu_crossval.py), which the model card's table of cross-validated variants reads.
set -euo pipefail
BRAINSEG=${BRAINSEG:-.venv/bin/brainseg}
VARIANT=${VARIANT:-}
fold_reports() { for i in 0 1 2 3 4; do printf -- '--fold-report %s ' "$1/fold-$i$2.json"; done; }
if [ -n "$VARIANT" ]; then
  BASELINE=$(python3 "$(dirname "$0")/shipped_cpu_crossval.py" pooled)
  # shellcheck disable=SC2046  # one argument per word, on purpose
  "$BRAINSEG" crossval --stage combine $(fold_reports "models/crossval_cpu_variants/$VARIANT" "") \
      --report "models/crossval_variants/${VARIANT}_cpu.json" --compare-to "$BASELINE"
  exit 0
fi
REPORTS=${REPORTS:-models/crossval_cpu}
# shellcheck disable=SC2046
"$BRAINSEG" crossval --stage combine $(fold_reports "$REPORTS" "") --report models/crossval_cpu_folds0-4.json
# shellcheck disable=SC2046
"$BRAINSEG" crossval --stage combine $(fold_reports "$REPORTS" _neighbour_score) \
    --report models/crossval_cpu_folds0-4_neighbour_score.json --compare-to models/crossval_cpu_folds0-4.json
