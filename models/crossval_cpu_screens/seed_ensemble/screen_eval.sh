set -euo pipefail
B=.venv/bin/brainseg
export PYTHONUNBUFFERED=1
R=models/crossval_cpu_screens/seed_ensemble
mkdir -p $R
A=runs/crossval-cpu-segmenter-spatial_20-missing_seq_0.2
S=runs/crossval-cpu-segmenter-shipped-seed_43
$B crossval --data data/kaggle_3m --out $A --stage evaluate --fold 0 --variant segmenter-spatial_20-missing_seq_0.2 --plan models/ablation_plan.json --report $R/fold-0_seed42.json --compare-to models/crossval_cpu_variants/segmenter-spatial_20-missing_seq_0.2/fold-0.json
$B crossval --data data/kaggle_3m --out $S --stage evaluate --fold 0 --variant segmenter-shipped-seed_43 --plan models/repeatability_plan.json --report $R/fold-0_seed43.json --compare-to models/crossval_cpu_variants/segmenter-shipped-seed_43/fold-0.json --compare-to $R/fold-0_seed42.json
$B crossval --data data/kaggle_3m --out $A --stage evaluate --fold 0 --variant segmenter-spatial_20-missing_seq_0.2 --plan models/ablation_plan.json --ensemble-with $S --report $R/fold-0_ensemble.json --compare-to $R/fold-0_seed42.json --compare-to $R/fold-0_seed43.json
echo SCREEN_EVAL_DONE
