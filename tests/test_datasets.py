"""One registry of the dataset folders the study reads (posenc_utils.primitives.datasets): every dataset a profile names is
declared there, once, and its readers name the layout and the source of a folder that is missing."""
from __future__ import annotations

import pytest

from posenc_utils.primitives import datasets
from posenc_utils.models.profiles import PROFILES, get_profile


def _named(profile) -> set[str]:
    ds = profile.downstream
    specs = (profile.train_set, *profile.test_sets, ds.sod_train, *ds.sod_tests, ds.seg_train, ds.seg_test)
    return {s.dataset.split(":")[0] for s in specs if s.dataset}


def test_every_dataset_a_profile_names_is_declared():
    named = set().union(*(_named(get_profile(p)) for p in PROFILES))
    assert named == {"DUTS-TR", "PASCAL-S", "MSRA-B", "ECSSD", "DUT-OMRON", "VOC2012"}
    assert named <= set(datasets.DATASETS)


def test_missing_folders_name_layout_source_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        datasets.sod_pairs("ECSSD")
    assert all(s in str(e.value) for s in ("ground_truth_mask", "cuhk.edu.hk", "POSENC_DATA_ROOT", str(tmp_path / "ECSSD")))
    with pytest.raises(FileNotFoundError, match=r"VOC 2012 \(val split\).*SegmentationClass"):
        datasets.voc_pairs("val")
    with pytest.raises(ValueError, match="DUTS-TR has no masks"):
        datasets.sod_pairs("DUTS-TR")
    with pytest.raises(ValueError, match="unknown dataset 'ImageNet'"):
        datasets.image_folder("ImageNet")


def test_pascal_s_serves_the_probe_and_salient_objects(tmp_path, monkeypatch):
    """PASCAL-S is one entry: its images for the probe, its images with masks for notebook 05."""
    from PIL import Image

    monkeypatch.setenv("POSENC_DATA_ROOT", str(tmp_path))
    for sub, ext, mode in (("Imgs", ".jpg", "RGB"), ("Masks", ".png", "L")):
        (tmp_path / "PASCAL-S" / sub).mkdir(parents=True)
        for i in range(2):
            Image.new(mode, (8, 8)).save(tmp_path / "PASCAL-S" / sub / f"{i}{ext}")
    assert datasets.image_folder("PASCAL-S") == tmp_path / "PASCAL-S" / "Imgs"
    assert [(a.name, b.name) for a, b in datasets.sod_pairs("PASCAL-S")] == [("0.jpg", "0.png"), ("1.jpg", "1.png")]
