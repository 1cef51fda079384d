#!/usr/bin/env bash
# Pool the CPU cross-validation's fold reports (scripts/cpu_crossval_fold.sh) into one report per slice score:
# models/crossval_cpu_folds0-4.json (the shipped score) and models/crossval_cpu_folds0-4_neighbour_score.json (the
# neighbour-lifted score, paired against the first). With all five folds' counted outputs in the reports
# (per_slice_pixel_counts), each pooled report also holds the final fit's choices for its score; then
#   .venv/bin/brainseg final-fit --choices-only --crossval models/crossval_cpu_folds0-4_neighbour_score.json
# writes the lifted score's operating point and temperature beside the shipped models (decision record).
set -euo pipefail
BRAINSEG=${BRAINSEG:-.venv/bin/brainseg}
REPORTS=${REPORTS:-models/crossval_cpu}
fold_reports() { for i in 0 1 2 3 4; do printf -- '--fold-report %s ' "$REPORTS/fold-$i$1.json"; done; }
# shellcheck disable=SC2046  # one argument per word, on purpose
"$BRAINSEG" crossval --stage combine $(fold_reports "") --report models/crossval_cpu_folds0-4.json
# shellcheck disable=SC2046
"$BRAINSEG" crossval --stage combine $(fold_reports _neighbour_score) \
    --report models/crossval_cpu_folds0-4_neighbour_score.json --compare-to models/crossval_cpu_folds0-4.json
