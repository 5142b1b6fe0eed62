"""Phase clocks: a run reads its own clock; nothing accumulates in the module between runs."""
from __future__ import annotations

from posenc_utils.primitives import timing


def test_phases_book_on_the_open_clock_only():
    timing.add("outside", 5.0)  # no block open: dropped, not kept for a later reader
    with timing.record() as clock:
        timing.add("readout_training", 1.5)
        timing.add("encoder_forward", 2.0, encoder="VGG16")
        timing.count_images("VGG16", 7)
        with timing.phase("checksum"):
            pass
    timing.add("readout_training", 10.0)  # after the block: not on its clock
    assert set(clock.seconds) == {"readout_training", "encoder_forward", "checksum"}
    assert clock.seconds["readout_training"] == 1.5 and clock.seconds["checksum"] >= 0
    assert clock.extractions["VGG16"] == {"encoder_forward": 2.0, "images": 7}
    with timing.record() as fresh:
        pass
    assert not fresh.seconds and not fresh.extractions, "every block starts from zero"


def test_an_inner_block_has_its_own_clock():
    with timing.record() as outer:
        timing.add("a", 1.0)
        with timing.record() as inner:
            timing.add("b", 2.0)
        timing.add("a", 1.0)
    assert dict(outer.seconds) == {"a": 2.0} and dict(inner.seconds) == {"b": 2.0}
