"""Probe your own model: checkpoints of one's own, Vision Transformers and their positional embedding, the card."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from posenc_utils.models import encoders
from posenc_utils.studies import experiments
from posenc_utils.engine import features, images
from posenc_utils.primitives import positions
from posenc_utils.runners import probe
from posenc_utils.primitives.borders import PaddingNotSupportedError
from posenc_utils.models.networks import CheckpointError, read_checkpoint
from posenc_utils.models.profiles import EncoderSpec, ImageSetSpec, get_profile

timm = pytest.importorskip("timm")


def _first_conv(enc) -> torch.Tensor:
    return next(m for m in enc.module.modules() if isinstance(m, torch.nn.Conv2d)).weight


# ---------------------------------------------------------------- checkpoints of one's own


def test_a_checkpoint_in_every_usual_form_loads(tmp_path):
    """A state dict, one inside a training script's container with DistributedDataParallel's prefix, a whole saved
    module and a safetensors file all give the encoder the checkpoint's weights."""
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)
    state = net.state_dict()
    forms = {"plain.pth": state, "container.pt": {"epoch": 7, "model": {f"module.{k}": v for k, v in state.items()}},
             "whole.pth": net}
    for name, obj in forms.items():
        torch.save(obj, tmp_path / name)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "weights.safetensors"))
    for name in [*forms, "weights.safetensors"]:
        got = read_checkpoint(tmp_path / name)
        assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state), name
        enc = encoders.build_encoder(EncoderSpec("tv:resnet18", f"file:{tmp_path / name}"), 0, 64)
        assert torch.equal(_first_conv(enc), state["conv1.weight"]), name
    assert "weights plain.pth" in EncoderSpec("tv:resnet18", f"file:{tmp_path / 'plain.pth'}").label


def test_a_checkpoint_that_does_not_fit_names_what_does_not_match(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match=r"(?s)does not fit.*missing from the file: .*layer1\.2.*Give MODEL"):
        encoders.build_encoder(EncoderSpec("tv:resnet34", f"file:{tmp_path / 'r18.pth'}"), 0, 64)
    state["fc.weight"] = torch.zeros(10, 512)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"(?s)1 in the file that the architecture does not have: extra\.weight"
                                              r".*fc\.weight \(10, 512\) in the file, \(1000, 512\)"):
        encoders.build_encoder(EncoderSpec("tv:resnet18", f"file:{tmp_path / 'bad.pth'}"), 0, 64)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a checkpoint torch or safetensors can read"):
        read_checkpoint(tmp_path / "junk.pth")
    torch.save({"lr": 0.1, "epochs": [1, 2]}, tmp_path / "hyper.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_checkpoint(tmp_path / "hyper.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nowhere.pth")


def test_a_failed_load_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    """The encoder is built (and its checkpoint checked) before any cache file is opened for writing."""
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("POSENC_CACHE_DIR", str(cache_dir))
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    image_set = images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=2), 64)
    before = sorted(p.relative_to(cache_dir) for p in cache_dir.rglob("*") if p.is_file())
    with pytest.raises(CheckpointError):
        features.extract_features(EncoderSpec("tv:resnet50", f"file:{tmp_path / 'r18.pth'}"), image_set)
    after = sorted(p.relative_to(cache_dir) for p in cache_dir.rglob("*") if p.is_file() and p.suffix != ".lock")
    assert after == [p for p in before if p.suffix != ".lock"], "no feature entry, no temporary file"


def test_a_timm_checkpoint_and_its_feature_key(tmp_path):
    torch.manual_seed(4)
    full = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "mine.pth"
    torch.save(full.state_dict(), path)
    spec = EncoderSpec("timm:resnet18", f"file:{path}")
    enc = encoders.build_encoder(spec, 0, 64)
    assert torch.equal(_first_conv(enc), full.conv1.weight)
    assert "mean" in enc.input_convention, "fed as timm trains the architecture"
    image_set = images.build_image_set(ImageSetSpec("dead_leaves", "dead_leaves", n=2), 64)
    key = features.feature_key(spec, 0, image_set, 28, "float16")
    torch.save({k: v + 1 for k, v in full.state_dict().items()}, path)  # same name, other weights
    assert features.feature_key(spec, 0, image_set, 28, "float16") != key
    with pytest.raises(CheckpointError, match="does not fit timm's resnet34"):
        encoders.build_encoder(EncoderSpec("timm:resnet34", f"file:{path}"), 0, 64)


# ---------------------------------------------------------------- transformers


def test_vit_is_tapped_at_evenly_spaced_blocks_with_its_positional_embedding_kept_zeroed_or_shuffled():
    kept = encoders.build_encoder(EncoderSpec("timm:vit_tiny_patch16_224"), 0, 64)
    assert kept.tap_names == ("blocks.2", "blocks.5", "blocks.8", "blocks.11") and kept.channels == (192,) * 4
    pos = dict(kept.module.named_parameters())["net.model.pos_embed"]
    assert pos.shape == (1, 1 + 16, 192), "made for the 64 px grid (4 x 4 patches) and its class token"
    zeroed = encoders.build_encoder(EncoderSpec("timm:vit_tiny_patch16_224", position="zeroed"), 0, 64)
    shuffled = encoders.build_encoder(EncoderSpec("timm:vit_tiny_patch16_224", position="shuffled"), 0, 64)
    z = dict(zeroed.module.named_parameters())["net.model.pos_embed"]
    s = dict(shuffled.module.named_parameters())["net.model.pos_embed"]
    assert not z.any() and pos.any(), "zeroed, and the kept one untouched by it"
    assert torch.equal(s[:, 0], pos[:, 0]), "the class token's embedding has no position: it stays"
    assert not torch.equal(s, pos) and torch.equal(s[0, 1:].sort(0).values, pos[0, 1:].sort(0).values)
    x = torch.rand(2, 3, 64, 64)
    assert not torch.allclose(kept(x)[0], zeroed(x)[0]) and "positional embedding zeroed" in zeroed.label
    assert encoders.tap_channels(EncoderSpec("timm:vit_tiny_patch16_224"), 64) == (192,) * 4


def test_what_a_transformer_and_a_cnn_refuse():
    for mode in ("reflect", "none"):
        with pytest.raises(PaddingNotSupportedError) as err:
            encoders.build_encoder(EncoderSpec("timm:vit_tiny_patch16_224", padding=mode), 0, 64)
        assert err.value.reason == "no layer pads"
    with pytest.raises(PaddingNotSupportedError, match="does not pad"):
        encoders.build_encoder(EncoderSpec("timm:vit_tiny_patch16_224", padding="canvas:0"), 0, 64)
    with pytest.raises(positions.PositionNotSupportedError) as err:
        encoders.build_encoder(EncoderSpec("vgg16", position="zeroed"), 0, 64)
    assert "convolutional" in err.value.reason
    with pytest.raises(ValueError, match="unknown position mode"):
        encoders.build_encoder(EncoderSpec("timm:vit_tiny_patch16_224", position="removed"), 0, 64)


@pytest.mark.slow
def test_swin_stages_come_channels_first_and_its_relative_bias_is_shuffled():
    spec = EncoderSpec("timm:swin_tiny_patch4_window7_224")
    enc = encoders.build_encoder(spec, 0, 224)
    outs = enc(torch.rand(1, 3, 224, 224))
    assert enc.channels == (96, 192, 384, 768) and [o.shape[-1] for o in outs] == [56, 28, 14, 7]
    table = {k: v for k, v in enc.module.named_parameters() if k.endswith("relative_position_bias_table")}
    shuffled = encoders.build_encoder(dataclasses.replace(spec, position="shuffled"), 0, 224)
    other = dict(shuffled.module.named_parameters())
    assert positions.kinds(enc.module) == ("relative",) and len(table) == 12
    for k, v in table.items():
        assert not torch.equal(other[k], v) and torch.equal(other[k].sort(0).values, v.sort(0).values)


def test_zeroing_a_vits_positional_embedding_lowers_the_readout():
    """A random-init ViT has no padded layer: its position can only come from its positional embedding, so the
    readout finds position with it and loses it once it is zeroed at inference (a real effect, not a constant)."""
    cfg = get_profile("quick")  # 64 px: 4 x 4 patches; measured: SPC 0.45 kept, 0.07 zeroed on the photos
    spc = {}
    for mode in ("kept", "zeroed"):
        spec = EncoderSpec("timm:vit_tiny_patch16_224", position=mode)
        res = experiments.probe(cfg, spec)
        d = res.per_image[res.per_image.test_set.isin(["photos", "noise"]) & res.per_image.pattern.isin(["H", "V", "G"])]
        spc[mode] = float(d.spc.fillna(0).mean())
    assert spc["kept"] > 0.25 and spc["zeroed"] < 0.15 and spc["kept"] - spc["zeroed"] > 0.2, spc


# ---------------------------------------------------------------- the card


def _card(spc: float, share: float, study: list[tuple[str, float, float]]) -> probe.Card:
    def rows(encoder, s, v):
        return [dict(encoder=encoder, test_set="photos", pattern=p, spc=s, position_variance=v) for p in "HVG"]

    mine = pd.DataFrame(rows("mine", spc, share))
    others = pd.DataFrame([r for e, s, v in study for r in rows(e, s, v)])
    empty = pd.DataFrame(columns=["setting", "status", "reason", "test_set", "spc", "position_variance"])
    return probe.Card(EncoderSpec("tv:resnet18"), get_profile("quick"), mine.assign(encoder="mine"), empty, empty,
                      empty, others, "test")


def test_the_card_says_when_the_readout_and_the_probe_free_measure_disagree(monkeypatch):
    monkeypatch.setattr(EncoderSpec, "label", property(lambda self: "mine"))
    study = [("a", 0.2, 0.01), ("b", 0.5, 0.05), ("c", 0.9, 0.20)]
    agree = probe.read_measures(_card(0.95, 0.3, study))
    assert any("place it alike" in s for s in agree) and not any("disagree" in s for s in agree)
    assert any("above 100% of them by SPC and above 100%" in s for s in agree)
    disagree = probe.read_measures(_card(0.95, 0.001, study))
    assert any("disagree (Lin et al. 2022): the readout ranks" in s for s in disagree)
    assert any("the probe-free measure ranks" in s for s in probe.read_measures(_card(0.1, 0.5, study)))


def test_the_ablations_setting_is_named_where_it_is_smaller():
    assert "trained on 100 training images and tested on all the photos" in probe.ablation_setting(get_profile("offline"))
    assert probe.ablation_setting(get_profile("offline", ablation_train_n=None, ablation_test_n=None)) == ""


def test_model_spec_and_its_errors(tmp_path):
    spec = probe.model_spec("timm:resnet18")
    assert spec == EncoderSpec("timm:resnet18") and probe.slug(spec) == "timm-resnet18-random"
    path = tmp_path / "my model.pth"
    torch.save({}, path)
    mine = probe.model_spec("tv:resnet18", str(path))
    assert mine.weights == f"file:{path.resolve()}" and probe.slug(mine) == "tv-resnet18-my-model"
    with pytest.raises(CheckpointError, match="no such file"):
        probe.model_spec("tv:resnet18", str(tmp_path / "missing.pth"))
    assert probe.main(["tv:resnet18", "--weights", str(tmp_path / "missing.pth")]) == 2
    assert probe.main(["timm:no_such_model_anywhere"]) == 2


@pytest.mark.slow
def test_a_quick_card_end_to_end(tmp_path, monkeypatch, capsys):
    """``python -m posenc_utils.probe`` on a small timm CNN: the plan first, then the card's CSVs, figure,
    Markdown and HTML, each part filled (the study's quick Table 1 is made for it)."""
    monkeypatch.setenv("POSENC_PROGRESS", "off")
    assert probe.main(["timm:resnet18", "--profile", "quick", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.index("[probe] profile quick") < out.index("card written")
    folder = tmp_path / "probe" / "quick" / "timm-resnet18-random"
    t1 = pd.read_csv(folder / "card_table1.csv")
    assert len(t1) == 5 * 4 and t1.spc.between(-1, 1).all() and t1.position_variance_train.between(0, 1).all()
    stages = pd.read_csv(folder / "card_stages.csv")
    assert stages.setting.nunique() == 6, "five stages and all"
    pads, pos = (pd.read_csv(folder / f"card_{name}.csv", keep_default_na=False) for name in ("padding", "position"))
    assert set(pads[pads.status == "ok"].setting) >= {"zeros", "reflect"} and (pos.status == "n/a").all()
    page = (folder / "card.html").read_text()
    assert "data:image/png;base64," in page and "Table 1" in page and "beside it" in page
    md = (folder / "card.md").read_text()
    assert "![the model beside" in md and "| pattern" in md and (folder / "card.png").stat().st_size > 10_000
    # the padding rows come from the smaller ablation setting, and the card says so beside them
    assert "Padding modes: mean SPC over the patterns with 95% intervals over readout seeds and test images, zeros " in md
    assert "zeros minus each mode (paired 95% intervals" in md  # the modes compared only as their intervals allow
    assert "The padding rows come from a smaller setting than Table 1's (readouts trained on 16 training images and " \
        "tested on 4 photos" in md
    assert "A smaller setting than Table 1's (readouts trained on 16" in md.split("## Where it comes from")[1]
    assert np.isfinite(pd.read_csv(folder / "card_table1.csv").spc).all()
    # the measures since the paper: row/column per tap, the constant-input artifact with its figure, the size sweep
    rc = pd.read_csv(folder / "card_rowcol.csv")
    assert {"act1", "layer1"} <= set(rc.tap) and rc.accuracy.between(0, 1).all() and (rc.bins <= rc.grid).all()
    assert "all taps" not in set(rc.tap)  # together at layer4's 2 x 2 grid: fewer positions than 4 bins
    art = pd.read_csv(folder / "card_artifact.csv")
    assert set(art.input) == {"zero", "grey"} and (art.artifact >= 0).all() and (folder / "card_artifact.png").exists()
    sizes = pd.read_csv(folder / "card_sizes.csv", keep_default_na=False)
    assert list(sizes.image_size) == [64, 65, 72] and (sizes.status == "ok").all()
    assert list(sizes.one_sided) == [4, 0, 2]  # ResNet18 at 64 px: its stride-2 3x3 layers read one side only
    assert "## Row/column classification" in md and "card_artifact.png" in md and "## The input-size sweep" in md
    assert page.count("data:image/png;base64,") == 2
