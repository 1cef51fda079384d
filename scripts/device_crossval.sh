#!/usr/bin/env bash
# Train the cross-validation folds in parallel on one GPU machine that has no TensorFlow (Keras on JAX).
#
# Prepared here (see README "Cross-validation"):
#   brainseg cache-slices --data data/kaggle_3m --out .gpu/cache128           # train + val patients, ~50 MB
#   brainseg crossval --data data/kaggle_3m --out .gpu/cv --stage folds        # the folds, made here
#   .gpu/whl: wheels of keras, optree and namex (the machine's image lacks them)
# Then, on the machine, from the repository root:  bash scripts/device_crossval.sh
# Each fold's models and run records come back as $OUT/fold-<i>.tgz; `brainseg crossval --stage evaluate`
# scores them here with the TensorFlow cascade.
#
# A variant of the ablation plan (e.g. VARIANT=segmenter-missing_seq_0.2 ROLES=segmenter CV=.gpu/cv-missing_seq,
# its folds made here with --stage folds, identical to the baseline's) trains only the model it changes; here,
# `brainseg crossval --out <its folder> --report <its report> --variant NAME --stage train --role classifier
# --reuse-from runs/crossval` copies the baseline's classifiers in, then `--stage evaluate --compare-to
# models/crossval.json` scores it paired with the shipped recipe, patient by patient.
set -u
OUT=${OUT:-/tmp/out}
DATA=${DATA:-.gpu/cache128}
CV=${CV:-.gpu/cv}
FOLDS=${FOLDS:-"0 1 2 3 4"}
TRAIN_LIMIT_S=${TRAIN_LIMIT_S:-450}
EXTRA=${EXTRA:-}   # e.g. "--epochs 1" for a dry run
ROLES=${ROLES:-"classifier segmenter"}
VARIANT=${VARIANT:-}
VARIANT_ARGS=${VARIANT:+--variant $VARIANT --report /tmp/unused.json}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
if [ -d .gpu/whl ] && ! "$PYTHON" -c "import keras" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
# Several processes share the GPU: no process may take most of its memory up front (JAX's default).
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi -L 2>/dev/null
"$PYTHON" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" || exit 4
start=$(date +%s)
# One process per fold and model (the two models of a fold are independent): ten processes share the GPU.
for fold in $FOLDS; do
  for role in $ROLES; do
    timeout "$TRAIN_LIMIT_S" "$PYTHON" -m brainseg.cli crossval --data "$DATA" --out "$CV" --stage train \
      --fold "$fold" --role "$role" $VARIANT_ARGS $EXTRA > "$OUT/train-fold-$fold-$role.log" 2>&1 &
  done
done
wait
echo "training wall clock: $(( $(date +%s) - start )) s"
for fold in $FOLDS; do
  dir="$CV/fold-$fold"
  tail -n 2 "$OUT"/train-fold-$fold-*.log
  # Models, sidecars and run records; not the resumable backups (three times the size). A fold stopped by
  # the time limit keeps its runs' best checkpoints instead, so its epochs so far are not lost.
  done_all=1
  for role in $ROLES; do [ -f "$dir/models/$role.keras" ] || done_all=0; done
  if [ "$done_all" = 1 ]; then skip=best.keras
  else skip=none; echo "fold $fold: unfinished"; fi
  tar czf "$OUT/fold-$fold.tgz" --exclude=backup --exclude="$skip" "$dir"
done
cat "$OUT"/train-fold-*.log > "$OUT/train.log"; rm -f "$OUT"/train-fold-*.log
ls -la "$OUT"
