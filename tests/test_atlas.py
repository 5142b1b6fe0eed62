"""The position atlas (posenc_utils.studies.atlas, posenc_utils.runners.atlas): its list of models, the networks of
fixed input size, the probe's refusals, the rows read back and made again, the sentences generated from the numbers,
and the jobs on submitit's local executor and on a real SLURM (started by .ci/slurm.sh under CI=true; skipped with
the reason elsewhere)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from posenc_utils.models.encoders import build_encoder, runs_at
from posenc_utils.models.families import timm_input_size
from posenc_utils.models.profiles import get_profile
from posenc_utils.primitives.positions import PositionNotSupportedError, set_position
from posenc_utils.primitives.specs import EncoderSpec
from posenc_utils.runners import atlas as runner
from posenc_utils.runners import probe
from posenc_utils.studies import atlas
from posenc_utils.studies.atlas import AtlasListError, Entry

CHEAP = [Entry("posenet:none", "PosENet", "control"), Entry("timm:convit_tiny", "ConViT", "transformer")]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for this module's cards (PosENet's quick Table 1 is made once)."""
    return tmp_path_factory.mktemp("atlas-cache")


@pytest.fixture
def out(tmp_path, shared_cache, monkeypatch):
    """An output folder with a quick Table 1 of the study to place the cards beside (so a card does not compute the
    study's), and the module's shared cache."""
    monkeypatch.setenv("POSENC_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("POSENC_PROGRESS", "off")
    (tmp_path / "out" / "quick").mkdir(parents=True)
    rows = [dict(encoder=e, test_set=t, pattern=p, spc=s, position_variance=v)
            for e, s, v in (("VGG16", 0.5, 0.2), ("PosENet", 0.0, 0.01)) for t in ("photos", "black")
            for p in ("H", "V")]
    pd.DataFrame(rows).to_csv(tmp_path / "out" / "quick" / "table1.csv", index=False)
    return tmp_path / "out"


# ---------------------------------------------------------------- the list


def test_the_default_list_spans_the_families():
    entries = atlas.read_models()
    names = [e.spec.name for e in entries]
    architectures = {e.spec.name for e in entries if e.kind != "control"}
    assert len(architectures) >= 24 and len(names) == len(set(e.model for e in entries))
    wanted = [("vgg",), ("resnet18", "resnet50"), ("resnext", "regnet"), ("efficientnet",), ("mobilenet",),
              ("convnext",), ("convmixer", "poolformer"), ("mixer", "resmlp"), ("vit_tiny", "vit_small"), ("deit",),
              ("swin",), ("eva02",), ("beit", "relpos"), ("coatnet", "maxvit", "levit")]
    for options in wanted:
        assert any(o in n for n in names for o in options), options
    assert {e.kind for e in entries} <= set(atlas.KINDS)
    assert any(e.spec.pretrained for e in entries), "the pretrained networks the offline profile can load"


def test_a_list_of_ones_own_and_its_errors(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("# my models\ntimm:resnet18\ntv:alexnet, AlexNet, convolutional\n")
    assert atlas.read_models(good) == [Entry("timm:resnet18", "timm:resnet18", "unknown"),
                                       Entry("tv:alexnet", "AlexNet", "convolutional")]
    for text, match in (("tv:alexnet,AlexNet,recurrent\n", "line 1: kind 'recurrent'"),
                        ("timm:resnet18\nno_such_net\n", "line 2: 'no_such_net' is not a model"),
                        ("timm:resnet18\ntimm:resnet18\n", "listed twice"), ("# nothing\n", "lists no model")):
        good.write_text(text)
        with pytest.raises(AtlasListError, match=match):
            atlas.read_models(good)
    with pytest.raises(AtlasListError, match="no list of models"):
        atlas.read_models(tmp_path / "missing.csv")
    assert runner.main(["--models", str(tmp_path / "missing.csv"), "--profile", "quick"]) == 2


def test_pretrained_twins_are_added_where_their_weights_are_here(tmp_path, monkeypatch):
    offline = get_profile("offline")
    before = runner.models(offline)
    from posenc_utils.models import networks

    path = networks.timm_weights_file("convnext_atto")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    after = runner.models(offline)
    assert [e.model for e in after if e not in before] == ["timm:convnext_atto:imagenet"]
    assert [e.model for e in runner.models(get_profile("quick"))] == list(get_profile("quick").atlas_models)


# ---------------------------------------------------------------- every model runs or is refused


def test_every_model_of_the_list_runs_at_the_quick_and_the_paper_size():
    for e in atlas.read_models():
        enc = build_encoder(e.spec, 0, 64)
        with torch.no_grad():
            outs = enc(torch.rand(1, 3, 64, 64))
        assert outs and all(o.ndim == 4 and o.shape[0] == 1 for o in outs), e.model
        assert runs_at(e.spec, 224), e.model


def test_a_network_made_for_one_size_is_fed_its_own_size():
    """LeViT's attention biases are sized for its grid: made for 64 px it runs; at 65 px it cannot be made, so its
    images are resized to its own 224 px (the card says so), and the token permutation is refused with the reason."""
    levit = EncoderSpec("timm:levit_128s")
    assert timm_input_size(levit, 64) is None and timm_input_size(levit, 65) == 224
    enc = build_encoder(levit, 0, 65)
    assert enc.module.resized_to == 224
    with torch.no_grad():
        assert enc(torch.rand(2, 3, 65, 65))[0].shape[-1] == 224 // 16
    with pytest.raises(PositionNotSupportedError, match="its own size"):
        set_position(enc.module, "permuted")
    mixer = build_encoder(EncoderSpec("timm:mixer_s16_224"), 0, 64)  # made for 64 px: a 4 x 4 token grid
    assert mixer.module.resized_to is None and mixer.channels == (512, 512, 512)


def test_the_probe_refuses_what_it_cannot_probe_with_the_reason(capsys, monkeypatch):
    assert probe.main(["timm:convit_tiny", "--profile", "quick"]) == 2
    err = capsys.readouterr().err
    assert "convit_tiny" in err and "features_only" in err and "Traceback" not in err

    def broken(*a, **k):
        raise AssertionError("Input height (64) doesn't match model (224).")

    monkeypatch.setattr(probe, "make_card", broken)
    assert probe.main(["tv:resnet18", "--profile", "quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe: tv:resnet18 could not be probed: AssertionError: Input height (64)")
    assert "POSENC_TRACEBACK=1" in err and "Traceback" not in err
    monkeypatch.setenv("POSENC_TRACEBACK", "1")
    with pytest.raises(AssertionError):
        probe.main(["tv:resnet18", "--profile", "quick"])


# ---------------------------------------------------------------- rows, resumed


def test_rows_are_read_back_failures_tried_again_and_damaged_rows_made_again(out, monkeypatch):
    quick = get_profile("quick")
    table = runner.run(CHEAP, quick, out, executor="inline", log=lambda s: None)
    assert list(table.status) == ["ok", "failed"]
    assert "timm:convit_tiny could not be probed" in table.error.iloc[1] and "features_only" in table.error.iloc[1]
    ok = table.iloc[0]
    assert ok.spc_low <= ok.spc <= ok.spc_high and (out / "quick" / "atlas" / "cards" / "posenet-none" / "card.html").exists()
    made = []
    real = runner.job
    monkeypatch.setattr(runner, "job", lambda model, *a, **k: made.append(model) or real(model, *a, **k))
    said = []
    again = runner.run(CHEAP, quick, out, executor="inline", log=said.append)
    assert made == ["timm:convit_tiny"] and "1 read back, 1 to make" in said[0]
    assert again.iloc[0].spc == ok.spc
    path = runner.row_path(CHEAP[0], "quick", out)
    path.write_text(path.read_text()[:40])  # a row cut short (a full disk, a kill): made again, the rest kept
    made.clear()
    runner.run(CHEAP, quick, out, executor="inline", log=lambda s: None)
    assert made == ["posenet:none", "timm:convit_tiny"] and json.loads(path.read_text())["status"] == "ok"


def test_the_atlas_is_written_and_read_back(out):
    quick = get_profile("quick", atlas_models=("posenet:none", "timm:convit_tiny"))
    table, record = runner.make(quick, out, executor="inline", log=lambda s: None)
    folder = out / "quick"
    assert record["failed"] == ["timm:convit_tiny"] and record["models"] == list(quick.atlas_models)
    page = atlas.PAGE.path(folder, ".html").read_text()
    assert 'href="atlas/cards/posenet-none/card.html"' in page and "could not be probed" in page
    assert atlas.FIGURE.png(folder).exists() and "## Where each family" in atlas.PAGE.md(folder).read_text()
    back, rec, why = runner.load(quick.with_overrides(atlas_in_main=False), out)
    assert why == "" and list(back.model) == list(table.model) and rec["models"] == record["models"]
    _, _, why = runner.load(quick.with_overrides(atlas_models=("posenet:none",)), out)
    assert "other models" in why


# ---------------------------------------------------------------- sentences from numbers


def _row(label, spc, lo, hi, **modes):
    row = dict(model=label, label=label, family="F", kind="convolutional", status="ok", spc=spc, spc_low=lo,
               spc_high=hi)
    for _, m in atlas.INTERVENTIONS:
        v = modes.get(m)
        row.update({f"d_spc_{m}": v[0] if v else np.nan, f"d_spc_{m}_low": v[1] if v else np.nan,
                    f"d_spc_{m}_high": v[2] if v else np.nan, f"{m}_status": "ok" if v else "n/a (no such part)"})
    return row


def test_each_family_sentence_says_only_what_its_intervals_allow():
    table = pd.DataFrame([_row("a", 0.8, 0.7, 0.9, reflect=(-0.5, -0.6, -0.4), circular=(-0.05, -0.1, 0.02)),
                          _row("b", 0.05, -0.02, 0.1, reflect=(-0.5, -0.6, -0.4)),
                          _row("c", 0.5, 0.4, 0.6, zeroed=(0.01, -0.03, 0.05)),
                          _row("d", 0.5, 0.4, 0.6)])
    [sentence] = atlas.family_sentences(table)
    assert "reflect lowers it (-0.50 [-0.60, -0.40])" in sentence and "circular" not in sentence
    assert "b: SPC 0.05 [-0.02, 0.10], not distinguishable from a constant prediction" in sentence
    assert "c: SPC 0.50 [0.40, 0.60]; no intervention that applies (zeroed) moves it beyond its interval" in sentence
    assert "d: SPC 0.50 [0.40, 0.60]; no intervention applies to it" in sentence


# ---------------------------------------------------------------- the jobs: local processes, SLURM


def test_jobs_run_as_processes_of_their_own_on_submitits_local_executor(out):
    pytest.importorskip("submitit")
    quick = get_profile("quick")
    table = runner.run(CHEAP, quick, out, executor="local", jobs=2, log=lambda s: None, poll=0.5)
    assert list(table.status) == ["ok", "failed"]
    row = json.loads(runner.row_path(CHEAP[0], "quick", out).read_text())
    assert row["pid"] != os.getpid() and row["slurm_job"] == ""
    assert list((out / "quick" / "atlas" / "logs" / "local").glob("*_submitted.pkl")), "the same pickled jobs"


def _slurm_missing() -> str:
    if not os.environ.get("SLURM_CONF"):
        why = Path(os.environ.get("SLURM_DIR", "/tmp/posenc-slurm"), "unavailable")
        return ("no SLURM here: .ci/slurm.sh starts one under CI=true or POSENC_SLURM=1"
                + (f" (it could not: {why.read_text().strip()})" if why.exists() else ""))
    if not shutil.which("sinfo") or subprocess.run(["sinfo"], capture_output=True).returncode:
        return f"SLURM_CONF={os.environ['SLURM_CONF']}, but sinfo does not answer"
    return ""


@pytest.mark.skipif(bool(_slurm_missing()), reason=_slurm_missing() or "-")
def test_one_slurm_job_per_model_and_a_rerun_submits_only_what_is_missing(out):
    quick = get_profile("quick")
    said = []
    table = runner.run(CHEAP, quick, out, executor="slurm", slurm=runner.Slurm(time_min=10, mem_gb=4, cpus=1),
                       log=said.append, poll=1.0)
    assert list(table.status) == ["ok", "failed"], table.error.tolist()
    assert "2 to make (slurm)" in said[0]
    row = json.loads(runner.row_path(CHEAP[0], "quick", out).read_text())
    assert row["slurm_job"] != "" and row["pid"] != os.getpid()
    said.clear()
    runner.run(CHEAP, quick, out, executor="slurm", log=said.append, poll=1.0)
    assert "1 read back, 1 to make (slurm)" in said[0]


def test_the_paper_profile_without_its_datasets_is_refused_before_any_job(tmp_path, capsys):
    assert runner.main(["--profile", "paper", "--output-dir", str(tmp_path), "--executor", "inline"]) == 2
    err = capsys.readouterr().err
    assert "the paper profile cannot make the atlas; missing" in err and "DUTS-TR" in err
    assert not (tmp_path / "paper" / "atlas" / "rows").exists()
