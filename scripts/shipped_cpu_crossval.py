"""Where the shipped models' CPU cross-validation lives, read from the records (no brainseg import, plain python3).

The shipped operating point was chosen from a pooled CPU cross-validation report (``source.report`` in
models/operating_point.json): the recipe's own folds, or, once a variant is adopted, that variant's folds. A new
variant is paired with that report and its fold reports, and reuses the model it leaves alone from that
cross-validation's run folder. The CPU scripts ask this helper instead of naming those files, so they follow an
adoption.

    python3 scripts/shipped_cpu_crossval.py pooled          # the pooled report
    python3 scripts/shipped_cpu_crossval.py fold-report 2   # its fold 2 report
    python3 scripts/shipped_cpu_crossval.py run-dir         # the run folder holding its fold models
"""

import json
import shlex
import sys
from pathlib import Path

POINT = Path("models/operating_point.json")


def pooled_report() -> str:
    return json.loads(POINT.read_text())["source"]["report"]


def fold_sources() -> list[dict]:
    report = pooled_report()
    sources = json.loads(Path(report).read_text()).get("combined_from")
    if not sources:
        sys.exit(f"{report} (the shipped operating point's source) does not pool CPU fold reports: no CPU "
                 "cross-validation to pair a variant with")
    return sources


def fold_report(fold: int) -> str:
    for source in fold_sources():
        if source["folds_scored"] == [fold]:
            return source["report"]
    sys.exit(f"{pooled_report()} pools no report of fold {fold} alone")


def run_dir() -> str:
    """The ``--out`` its fold reports were scored from (the same for every fold)."""
    folders = set()
    for source in fold_sources():
        words = shlex.split(source["command"])
        folders.add(words[words.index("--out") + 1])
    if len(folders) != 1:
        sys.exit(f"{pooled_report()} pools fold reports scored from several run folders: {sorted(folders)}")
    return folders.pop()


if __name__ == "__main__":
    what = sys.argv[1:2]
    if what == ["pooled"]:
        print(pooled_report())
    elif what == ["fold-report"] and len(sys.argv) == 3:
        print(fold_report(int(sys.argv[2])))
    elif what == ["run-dir"]:
        print(run_dir())
    else:
        sys.exit("usage: shipped_cpu_crossval.py pooled | fold-report FOLD | run-dir")
