"""The package tree is the pipeline: each stage imports only the stages before it (checked on the source)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "brainseg"
SHARED = {"errors", "settings", "runtime"}
# What each stage may import besides itself and the shared modules. Training is never imported by inference.
ALLOWED = {
    "core": set(),
    "training": {"core"},
    "inference": {"core"},
    "scoring": {"core", "inference"},  # batch scoring into the prediction store (local or Ray)
    "studies": {"core", "inference"},  # NIfTI / DICOM studies in, masks back in their own grid
    "review": {"core", "inference"},
    "evaluation": {"core", "inference", "review"},  # bench times the review tools
    "experiments": {"core", "training", "inference", "evaluation"},
    "reports": {"core", "training", "inference", "evaluation", "review"},
    "app": {"core", "inference", "evaluation", "review", "reports", "studies"},
}


def _brainseg_imports(path: Path) -> set[str]:
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "brainseg" and len(parts) > 1:
                stages.add(parts[1])
            if isinstance(node, ast.ImportFrom) and name == "brainseg":
                stages.update(a.name for a in node.names)
    return stages


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_stage_imports_only_earlier_stages(stage):
    for path in sorted((PACKAGE / stage).glob("*.py")):
        imported = _brainseg_imports(path) - SHARED - {stage}
        assert imported <= ALLOWED[stage], f"{path.relative_to(PACKAGE.parent)} imports {imported - ALLOWED[stage]}"


def test_every_stage_is_listed():
    stages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert stages == set(ALLOWED)
