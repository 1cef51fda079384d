"""Where brainseg finds its models, demo cases and data, from environment variables or the checkout.

``BRAINSEG_MODELS_DIR``: the models folder (default: ``models/`` of this checkout).
``BRAINSEG_DATA_DIR``: the data folder the dashboard opens first (default: the shipped demo cases).
``BRAINSEG_REVIEW_DB``: the review store, a SQLite file or a SQLAlchemy URL (default: the user's data folder).
``BRAINSEG_STORE``: a prediction store folder the dashboard reads outputs from and scores missing patients into
(default: none, the cascade runs in the server process for each patient it shows).
``BRAINSEG_RUNTIME``: what executes the networks, ``onnxruntime`` (default) or ``tensorflow``
(``brainseg.inference.runtimes``).
``BRAINSEG_CACHE_DIR``: where converted ONNX graphs are cached (default: the user's cache folder).
``BRAINSEG_DATA_ROOTS``: folders (separated by ``os.pathsep``) under which the dashboard may open data;
by default the demo cases and ``BRAINSEG_DATA_DIR``. A visitor can never make the server read elsewhere.

A non-editable install (``pip install .``) has no checkout around it: the defaults then do not exist
and ``models_dir`` says which variable to set, instead of failing later on a missing file.
"""

from __future__ import annotations

import os
from pathlib import Path

from brainseg.errors import BrainsegError

CHECKOUT_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR_ENV = "BRAINSEG_MODELS_DIR"
DATA_DIR_ENV = "BRAINSEG_DATA_DIR"
DATA_ROOTS_ENV = "BRAINSEG_DATA_ROOTS"
REVIEW_DB_ENV = "BRAINSEG_REVIEW_DB"
STORE_ENV = "BRAINSEG_STORE"
RUNTIME_ENV = "BRAINSEG_RUNTIME"
CACHE_DIR_ENV = "BRAINSEG_CACHE_DIR"
RUNTIMES = ("onnxruntime", "tensorflow")  # the first is the default
DEMO_DATA_DIR = CHECKOUT_ROOT / "demo" / "kaggle_3m"
DEFAULT_MODELS_DIR = CHECKOUT_ROOT / "models"


class SettingsError(BrainsegError):
    """A configured or default location does not exist."""


def configured_models_dir() -> Path:
    """``BRAINSEG_MODELS_DIR`` or the checkout's ``models/``, whether or not it exists."""
    configured = os.environ.get(MODELS_DIR_ENV)
    return Path(configured) if configured else DEFAULT_MODELS_DIR


def models_dir() -> Path:
    """The models folder; raises SettingsError naming ``BRAINSEG_MODELS_DIR`` when there is none."""
    configured = os.environ.get(MODELS_DIR_ENV)
    path = configured_models_dir()
    if not (path / "classifier.keras").is_file():
        where = f"${MODELS_DIR_ENV}={configured}" if configured else f"the default {path}"
        raise SettingsError(f"no models in {where}: set {MODELS_DIR_ENV} to a folder holding classifier.keras and "
                            "segmenter.keras (a `pip install .` does not copy the repository's models/ folder)")
    return path


def is_models_folder(path: Path) -> bool:
    """A folder holding both networks of the cascade."""
    return (path / "classifier.keras").is_file() and (path / "segmenter.keras").is_file()


def model_folder_choices() -> list[Path]:
    """Model folders the dashboard may switch between (resolved): the configured one (``BRAINSEG_MODELS_DIR`` or
    ``models/``), then its sibling folders and its own sub-folders that hold both networks (e.g. a
    ``brainseg finetune --out models-ft1`` folder beside ``models/``). Only these are offered: a visitor never
    types a server path."""
    home = configured_models_dir().resolve()
    choices = [home] if is_models_folder(home) else []
    for parent in (home.parent, home):
        try:
            folders = sorted(p for p in parent.iterdir() if p.is_dir())
        except OSError:
            continue
        choices.extend(p.resolve() for p in folders if p.resolve() not in choices and is_models_folder(p))
    return choices


def default_data_dir() -> Path:
    """The folder the dashboard opens first; raises SettingsError naming ``BRAINSEG_DATA_DIR`` when missing."""
    configured = os.environ.get(DATA_DIR_ENV)
    path = Path(configured) if configured else DEMO_DATA_DIR
    if not path.is_dir():
        where = f"${DATA_DIR_ENV}={configured}" if configured else f"the demo cases at {path}"
        raise SettingsError(f"no data folder at {where}: set {DATA_DIR_ENV} to a Kaggle-layout folder "
                            "(a `pip install .` does not copy the repository's demo/ folder)")
    return path


def data_roots() -> list[Path]:
    """Folders under which the dashboard may open data (resolved, existing ones only)."""
    configured = os.environ.get(DATA_ROOTS_ENV)
    candidates = [Path(p) for p in configured.split(os.pathsep) if p.strip()] if configured else [DEMO_DATA_DIR]
    # The folder the dashboard opens first is the administrator's own choice: always allowed.
    candidates.append(Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else DEMO_DATA_DIR)
    roots: list[Path] = []
    for path in candidates:
        if path.is_dir() and path.resolve() not in roots:
            roots.append(path.resolve())
    return roots


def allowed_data_dir(path: str | Path) -> Path:
    """``path`` resolved, if it lies under one of the data roots; SettingsError otherwise.

    Resolving first defeats ``..`` and symbolic links pointing out of a root.
    """
    resolved = Path(path).expanduser().resolve()
    roots = data_roots()
    if not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none configured"
        raise SettingsError(f"{path} is not under an allowed data root ({allowed}); an administrator can add "
                            f"roots with ${DATA_ROOTS_ENV}")
    return resolved


def data_folder_choices(roots: list[Path] | None = None) -> list[Path]:
    """Kaggle-layout folders a visitor may choose: each root (default: ``data_roots()``), and its sub-folders
    that hold patient folders."""
    choices: list[Path] = []
    for root in data_roots() if roots is None else roots:
        for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            if folder not in choices and _looks_like_dataset(folder):
                choices.append(folder)
    return choices


def _looks_like_dataset(folder: Path) -> bool:
    try:
        return any(child.is_dir() and any(child.glob("*_mask.tif")) for child in folder.iterdir())
    except OSError:
        return False


def review_db() -> str:
    """The review store: ``BRAINSEG_REVIEW_DB`` (a SQLite file path or a SQLAlchemy URL such as
    ``postgresql+psycopg://user@host/db``), else ``review_log.sqlite`` in the user's data folder
    (``~/.local/share/brainseg`` on Linux): outside the installed package, so an upgrade or a read-only
    install never loses or blocks the reviews."""
    configured = os.environ.get(REVIEW_DB_ENV, "").strip()
    if configured:
        return configured
    import platformdirs

    return str(platformdirs.user_data_path("brainseg") / "review_log.sqlite")


def prediction_store() -> Path | None:
    """The prediction store folder (``BRAINSEG_STORE``; see ``brainseg score``), or None when unset."""
    configured = os.environ.get(STORE_ENV, "").strip()
    return Path(configured) if configured else None


def inference_runtime() -> str:
    """``BRAINSEG_RUNTIME`` (``onnxruntime`` or ``tensorflow``), default ``onnxruntime``; SettingsError otherwise."""
    configured = os.environ.get(RUNTIME_ENV, "").strip() or RUNTIMES[0]
    if configured not in RUNTIMES:
        raise SettingsError(f"${RUNTIME_ENV}={configured!r} is not an inference runtime; choose one of "
                            f"{', '.join(RUNTIMES)}")
    return configured


def onnx_cache_dir() -> Path:
    """Where converted ONNX graphs are cached: ``BRAINSEG_CACHE_DIR``, else ``onnx`` in the user's cache folder
    (``~/.cache/brainseg`` on Linux). Entries are named by what they depend on, so the folder can be emptied
    at any time."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured) / "onnx"
    import platformdirs

    return platformdirs.user_cache_path("brainseg") / "onnx"
