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
    """The stages a module reaches: by ``from brainseg.X ...``, ``import brainseg.X``, ``from brainseg import X``
    or ``brainseg.X`` after ``import brainseg``; a relative import is refused (it would hide the stage)."""
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import 'from {'.' * node.level}{node.module or ''}'")
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "brainseg" and len(parts) > 1:
                stages.add(parts[1])
            if isinstance(node, ast.ImportFrom) and name == "brainseg":
                stages.update(a.name for a in node.names)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "brainseg":
            stages.add(node.attr)
    return stages - {"__file__", "__version__"}


def test_every_way_of_reaching_a_stage_is_seen(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import brainseg\nimport brainseg.review.saliency\nfrom brainseg import studies\n"
                      "x = brainseg.training.train\ny = brainseg.__version__\n")
    assert _brainseg_imports(module) == {"review", "studies", "training"}
    module.write_text("from .cascade import Cascade\n")
    with pytest.raises(AssertionError, match="relative import"):
        _brainseg_imports(module)


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_stage_imports_only_earlier_stages(stage):
    for path in sorted((PACKAGE / stage).glob("*.py")):
        imported = _brainseg_imports(path) - SHARED - {stage}
        assert imported <= ALLOWED[stage], f"{path.relative_to(PACKAGE.parent)} imports {imported - ALLOWED[stage]}"


def test_every_stage_is_listed():
    stages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert stages == set(ALLOWED)
