# Sourced by cpu_crossval_fold.sh and cpu_crossval_pool.sh: which of the shipped recipe's CPU fold and pooled
# reports were made with the shipped operating point's slice score, so a variant is paired with that one.
# shipped_score_suffix prints the reports' file-name suffix for it ("_neighbour_score" or nothing).
shipped_score_suffix() {
  local score
  score=$(python3 -c "import json; print(json.load(open('models/operating_point.json'))['slice_score'])")
  case "$score" in
    classifier+segmenter+neighbours) echo _neighbour_score ;;
    *) echo "" ;;
  esac
}
