set -euo pipefail
B=.venv/bin/brainseg
export PYTHONUNBUFFERED=1
[ -d runs/cache128 ] || $B cache-slices --data data/kaggle_3m --out runs/cache128
A=runs/crossval-cpu-segmenter-spatial_20-missing_seq_0.2
$B crossval --data data/kaggle_3m --out $A --stage folds --variant segmenter-spatial_20-missing_seq_0.2 --plan models/ablation_plan.json
$B crossval --data runs/cache128 --out $A --stage train --fold 0 --variant segmenter-spatial_20-missing_seq_0.2 --plan models/ablation_plan.json
S=runs/crossval-cpu-segmenter-shipped-seed_43
$B crossval --data data/kaggle_3m --out $S --stage folds --variant segmenter-shipped-seed_43 --plan models/repeatability_plan.json
$B crossval --data runs/cache128 --out $S --stage train --fold 0 --variant segmenter-shipped-seed_43 --plan models/repeatability_plan.json --reuse-from $A
echo SCREEN_TRAIN_DONE
