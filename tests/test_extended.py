"""`make extended`: the width sweep and the long budget curve, made here, written with the record of their readouts,
and read back only where this code would train exactly those readouts."""
from __future__ import annotations

import json

import pytest

from posenc_utils.studies import extended
from posenc_utils.models.profiles import EncoderSpec, get_profile


def _tiny(epochs: int = 1, **changes):
    return get_profile("quick", image_size=32, encoders=(EncoderSpec("posenet", "none"), EncoderSpec("vgg16", "hed")),
                       width_sweep=(2, 4), extended_in_main=False, curve_max_steps=16, seeds=2,
                       readout={"epochs": epochs, "batch_size": 8}, **changes)


@pytest.mark.slow
def test_extended_readouts_round_trip_and_refuse_other_readouts(tmp_path):
    profile = _tiny()
    missing, why = extended.load(profile, tmp_path)
    assert missing is None and "make extended" in why
    made = extended.compute(profile)
    record = extended.write(profile, tmp_path, made, 12.5)
    sweep = made.table[made.table.test_set == "photos"]
    assert {"2 layers, 3x3, width 2", "3 layers, 3x3, width 4", "1 layer, 3x3"} <= set(sweep.setting)
    assert (sweep[sweep.encoder == "VGG16 (HED)"].n_seeds == 2).all()  # the encoder's readout seeds
    assert set(made.more["budget_per_image"].width.dropna()) == {4.0}  # the budget check at the widest width
    assert made.more["curve"].extended.all() and made.more["curve"].steps.max() >= profile.curve_max_steps
    assert (made.more["costs"].train_seconds > 0).all() and len(made.more["costs"]) == len(set(zip(sweep.encoder, sweep.setting)))
    saved = json.loads(record.read_text())
    assert saved["readouts"] == extended.readout_keys(profile) and saved["seconds"] == 12.5
    back, why = extended.load(profile, tmp_path)
    assert why == "" and len(back.per_image) == len(made.per_image) and back.table.spc.tolist() == pytest.approx(
        made.table.spc.tolist(), nan_ok=True)
    extended.write(profile, tmp_path, made, 1.0)  # read from the cache again: the record keeps what making took
    assert json.loads(record.read_text())["seconds"] == 12.5
    other, why = extended.load(_tiny(epochs=2), tmp_path)
    assert other is None and "other readouts" in why
    nothing, why = extended.results(_tiny().with_overrides(width_sweep=()), tmp_path)
    assert nothing is None and "no width sweep" in why
