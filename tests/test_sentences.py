"""Sentences that cannot drift from their numbers.

Every hand-written sentence of the README and of the notebooks' text (outside the README's generated blocks, which
``posenc_utils.reporting.report`` and ``posenc_utils.reporting.findings`` write from the numbers) that uses a word of :data:`RANKING` is
registered in :data:`CHECKED` with the check that reads what it states: a function here that reads the study's
products (``figures/offline``), or a test of the suite that proves it. An unregistered one fails the test, and so does
a registration whose sentence is gone or whose named test does not exist.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from posenc_utils.primitives import paths

RANKING = ("more", "less", "fewer", "most", "least", "higher", "lower", "larger", "smaller", "greater", "better",
           "worse", "best", "worst", "far", "near", "nearly", "every", "all", "none", "above", "below", "exceed",
           "exceeds", "always", "never")
WORD = re.compile(r"\b(" + "|".join(RANKING) + r")\b", re.I)
OFFLINE = paths.FIGURES_DIR / "offline"
TESTS = Path(__file__).resolve().parent


def _paragraphs(markdown: str) -> list[str]:
    """The prose of a Markdown text: generated blocks, code blocks, tables, headings, images and HTML comments left
    out; each paragraph (or list item) as one line."""
    text = re.sub(r"<!-- (\w+):start -->.*?<!-- \1:end -->", "\n\n", markdown, flags=re.S)
    text = re.sub(r"```.*?```", "\n\n", text, flags=re.S)
    out, current = [], []
    for line in text.splitlines() + [""]:
        s = line.strip()
        if not s or s.startswith(("|", "#", "![", "<!--")) or s.startswith(("- ", "* ", "1. ", "2. ", "3. ")):
            if current:
                out.append(" ".join(current))
            current = [s.lstrip("-* 0123456789.").strip()] if s.startswith(("- ", "* ", "1. ", "2. ", "3. ")) else []
            continue
        current.append(s)
    return [p for p in out if p]


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?:;])\s+(?=[A-Z(`*\"])", paragraph) if s.strip()]


def hand_written() -> list[tuple[str, str]]:
    """(where, sentence) of every hand-written sentence of the README and the notebooks' Markdown cells."""
    out = [("README.md", s) for p in _paragraphs((paths.PROJ_ROOT / "README.md").read_text()) for s in _sentences(p)]
    for nb in sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        md = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        out += [(nb.name, s) for p in _paragraphs(md) for s in _sentences(p)]
    return out


def _words(sentence: str) -> str:
    """A sentence without its inline code (names such as the padding mode ``none`` are not words)."""
    return re.sub(r"`[^`]*`", " ", sentence)


def ranking_sentences() -> list[tuple[str, str]]:
    return [(where, s) for where, s in hand_written() if WORD.search(_words(s))]


# ---------------------------------------------------------------- the checks of the sentences that rank or size


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(OFFLINE / name)


def _papers_code_recomputes_features():
    """PAPER.md, the specification, says the authors' code recomputes the encoder's features each epoch and pattern."""
    paper = re.sub(r"\s+", " ", (paths.PROJ_ROOT.parent / "shared" / "paper" / "PAPER.md").read_text()) \
        if (paths.PROJ_ROOT.parent / "shared" / "paper" / "PAPER.md").exists() else ""
    if not paper:
        pytest.skip("PAPER.md is not beside the project here")
    assert "recomputes encoder features every epoch for every target pattern" in paper


def _vgg16_without_padding_needs_196_px():
    """VGG16 without padding: its deepest tap has a map at 196 px and none at 195."""
    from posenc_utils.models.encoders import ImageTooSmallError, build_encoder
    from posenc_utils.models.profiles import EncoderSpec

    build_encoder(EncoderSpec("vgg16", "random", "none"), 0, 196)
    with pytest.raises(ImageTooSmallError):
        build_encoder(EncoderSpec("vgg16", "random", "none"), 0, 195)


BASELINE = "tests/test_measures.py::test_baseline_summary_gives_each_row_its_constant_and_its_failures"
CHECKED: dict[str, object] = {
    # the readout's baseline and what a failed readout does (the rules' tests)
    "Each readout row carries its baseline": BASELINE,
    "the training loss of the best constant prediction": BASELINE,
    "its training loss against the best constant prediction's": BASELINE,
    "is more than 10% above the constant's has failed to train":
        "tests/test_measures.py::test_a_head_fails_when_its_training_loss_does_not_reach_the_constant",
    "they never decide.": "tests/test_claims.py::test_random_init_rows_never_decide",
    "with at least the study's uncertainty": "tests/test_claims.py::test_the_budget_check_keeps_the_study_uncertainty",
    "falling short of the best stage is the readout's shortfall":
        "tests/test_claims.py::test_claim6_all_stages_short_of_the_best_is_the_readout_not_a_refutation",
    "a mode is said above or below zeros only where the interval":
        "tests/test_padding_ablation.py::test_mode_contrasts_say_only_what_the_intervals_allow",
    "its gain should be the larger of the two on the centre-biased scenes":
        "tests/test_downstream.py::test_position_signature_is_the_centre_gain_minus_the_anywhere_gain",
    # what the code does
    "no cell has more than three lines of progress": "tests/test_pipeline_runs.py::check_reads_like_a_paper",
    "follow image gradients far better than the same network with random weights":
        "tests/test_encoders.py::test_hed_detects_edges",
    "every entry is keyed by everything that decides it": "tests/test_cache.py::test_failing_fill_leaves_no_entry",
    "recomputed, never used": "tests/test_cache.py::test_damaged_entry_is_a_miss_with_a_warning",
    "the best bare forward pass of each encoder's network": "tests/test_bench.py::test_flops_and_best_forward",
    "VGG16 without padding needs at least 196 px input": _vgg16_without_padding_needs_196_px,
    "The authors' code recomputes them every epoch for every pattern.": _papers_code_recomputes_features,
}


def _registered(sentence: str) -> list[str]:
    return [k for k in CHECKED if k in sentence]


def test_every_ranking_sentence_is_generated_or_checked():
    missing = [f"{where}: {s}" for where, s in ranking_sentences() if not _registered(s)]
    assert not missing, ("hand-written sentences that rank, order or size without a registered check (generate them "
                         "from the numbers, reword them, or register them in CHECKED with a check):\n- "
                         + "\n- ".join(missing))


def test_every_registration_names_a_sentence_and_a_check_that_exists():
    flagged = [s for _, s in ranking_sentences()]
    stale = [k for k in CHECKED if not any(k in s for s in flagged)]
    assert not stale, f"registered sentences no longer written, or no longer ranking: {stale}"
    for fragment, check in CHECKED.items():
        if isinstance(check, str):
            file, _, name = check.partition("::")
            tree = ast.parse((TESTS.parent / file).read_text())
            assert name in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}, (fragment, check)
        else:
            assert callable(check), fragment


@pytest.mark.parametrize("fragment", [k for k, v in CHECKED.items() if callable(v)])
def test_the_checks_of_the_registered_sentences_hold(fragment):
    CHECKED[fragment]()


def test_the_checker_finds_a_ranking_sentence_outside_the_generated_blocks():
    """The test can fail: a hand-written ranking sentence is found, one inside a generated block is not."""
    text = "Intro.\n\nZero padding carries far more position than reflect.\n\n<!-- x:start -->\nAll of it.\n<!-- x:end -->\n"
    found = [s for p in _paragraphs(text) for s in _sentences(p) if WORD.search(_words(s))]
    assert found == ["Zero padding carries far more position than reflect."]
