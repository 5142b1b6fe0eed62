"""The training-budget checks: the paper's schedule shape at a larger budget, the curve's budgets, the seeds."""
from __future__ import annotations

from posenc_utils.studies import budget
from posenc_utils.models.profiles import EncoderSpec, ReadoutSpec, get_profile


def test_scaled_keeps_the_schedule_shape():
    base = ReadoutSpec()  # the paper's: 15 epochs, the drop after 10
    for factor in (2, 4, 20.625):
        s = budget.scaled(base, factor)
        assert s.epochs == round(15 * factor) and abs(s.lr_step / s.epochs - 10 / 15) < 0.02
        assert (s.lr, s.batch_size, s.lr_gamma) == (base.lr, base.batch_size, base.lr_gamma)
    assert budget.scaled(base, 1) == base


def test_steps_count_the_short_last_batch():
    assert budget.steps(500, ReadoutSpec()) == 15 * 16
    assert budget.steps(10553, ReadoutSpec()) == budget.PAPER_STEPS


def test_curve_reaches_the_papers_steps_on_the_small_set():
    cfg = get_profile("offline")
    posenet, vgg = EncoderSpec("posenet", "none"), EncoderSpec("vgg16", "hed")
    small = budget.curve_budgets(cfg, cfg.curve_train_n, posenet)
    assert small[0] == cfg.readout and budget.steps(cfg.curve_train_n, small[-1]) >= budget.PAPER_STEPS
    full = budget.curve_budgets(cfg, cfg.train_set.n, posenet)
    assert [s.epochs for s in full] == [15, 60]
    assert [s.epochs for s in budget.curve_budgets(cfg, cfg.train_set.n, vgg)] == [15, 30]  # the check's: cached


def test_larger_budget_keeps_the_deciding_rows_on_one_seed():
    cfg = get_profile("offline")
    b = budget.larger_budget(cfg)
    assert b.seeds == 1 and b.readout.epochs == 2 * cfg.readout.epochs
    assert all(e.name == "posenet" or e.pretrained for e in b.encoders)
    assert {e.weights for e in b.encoders} == {"none", "hed", "imagenet"}


def test_random_init_rows_get_fewer_seeds():
    cfg = get_profile("offline")
    assert cfg.seeds_for(EncoderSpec("vgg16", "hed")) == (0, 1, 2)
    assert cfg.seeds_for(EncoderSpec("posenet", "none")) == (0, 1, 2)
    assert cfg.seeds_for(EncoderSpec("resnet152", "random")) == (0,)
