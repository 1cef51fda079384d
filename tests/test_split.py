import json

import pandas as pd
import pytest
from conftest import MODELS_DIR

from brainseg.core.split import PARTS, check_disjoint, is_final_fit, load_split, make_split, select_part, trained_on
from brainseg.errors import DataError


def test_shipped_split_is_disjoint_and_covers_95_patients():
    split = load_split(MODELS_DIR / "split.json")
    ids = [p for part in PARTS for p in split[part]]
    assert len(ids) == len(set(ids)) == 95
    for a in PARTS:
        for b in PARTS:
            if a < b:
                assert not set(split[a]) & set(split[b]), f"{a} and {b} share patients"


def test_demo_cases_are_test_patients(demo_dir):
    split = load_split(MODELS_DIR / "split.json")
    demo_patients = {"_".join(p.name.split("_")[:3]) for p in demo_dir.iterdir() if p.is_dir()}
    assert demo_patients <= set(split["test"])


def _patients(n=60):
    institutions = ["CS", "DU", "FG", "HT"]
    return pd.DataFrame({
        "patient_id": [f"TCGA_{institutions[i % 4]}_{i:04d}" for i in range(n)],
        "institution": [institutions[i % 4] for i in range(n)],
        "tumor_pixels": [(i * 7919) % 100_000 for i in range(n)],
    })


def test_make_split_is_seeded_disjoint_and_stratified():
    patients = _patients()
    split = make_split(patients, seed=3)
    assert split == make_split(patients, seed=3)
    assert split != make_split(patients, seed=4)
    check_disjoint(split)
    assert sum(len(v) for v in split.values()) == len(patients)
    by_id = patients.set_index("patient_id")
    for part in ("val", "test"):
        assert set(by_id.loc[split[part], "institution"]) == {"CS", "DU", "FG", "HT"}
        # burden spread: each held-out part has patients from both halves of the burden range
        burden = by_id.loc[split[part], "tumor_pixels"]
        median = patients["tumor_pixels"].median()
        assert (burden < median).any() and (burden > median).any()


def test_overlap_is_detected(tmp_path):
    with pytest.raises(DataError, match="TCGA_CS_0001 is in both 'train' and 'test'"):
        check_disjoint({"train": ["TCGA_CS_0001"], "val": [], "test": ["TCGA_CS_0001"]})
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["a"], "val": ["a"], "test": []}))
    with pytest.raises(DataError, match="both"):
        load_split(path)


def test_bad_split_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_split(tmp_path / "bad.json")


def test_select_part(demo_dir):
    from brainseg.core.data import scan_dataset

    manifest = scan_dataset(demo_dir)
    split = load_split(MODELS_DIR / "split.json")
    assert len(select_part(manifest, split, "test")) == len(manifest)
    assert len(select_part(manifest, None, "all")) == len(manifest)
    with pytest.raises(DataError, match="no patient of the 'train' split"):
        select_part(manifest, split, "train")
    with pytest.raises(DataError, match="no patient of the 'train\\+val' split"):
        select_part(manifest, split, "train+val")  # demo cases come from the test split only
    with pytest.raises(DataError, match="unknown split part 'tset'"):
        select_part(manifest, split, "train+tset")


def test_joined_parts_select_the_union_of_their_patients():
    import pandas as pd

    manifest = pd.DataFrame({"patient_id": ["A", "A", "B", "C", "D"], "slice": [1, 2, 1, 1, 1]})
    split = {"train": ["A", "B"], "val": ["C"], "test": ["D"]}
    assert select_part(manifest, split, "train+val")["patient_id"].tolist() == ["A", "A", "B", "C"]
    assert select_part(manifest, split, "val")["patient_id"].tolist() == ["C"]


def test_trained_on_parts_from_sidecar_configs():
    assert trained_on({"fit_on": "train+val"}) == ["train", "val"]
    assert trained_on({"fit_on": "train"}) == ["train"]
    assert trained_on({}) == ["train"]  # sidecars written before final fits existed
    assert is_final_fit({"fit_on": "train+val"})
    assert not is_final_fit({"fit_on": "train"})
    assert not is_final_fit({})
