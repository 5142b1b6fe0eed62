"""The specs (posenc_utils.primitives.specs): a bad field fails when the spec is made, naming the field, its value and what
it may be; every profile's specs are valid; labels, parsing and cache keys are what they were before the specs
moved out of posenc_utils.models.profiles; the family registry says what to import when it is empty."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from posenc_utils.primitives import cache, specs
from posenc_utils.models import families
from posenc_utils.models.profiles import PROFILES, get_profile
from posenc_utils.primitives.specs import (IMAGE_KINDS, DownstreamSpec, EncoderSpec, Family, ImageSetSpec, ReadoutSpec,
                                SpecError, family_of, register_family)

# ---------------------------------------------------------------- each field refused when the spec is made

BAD_ENCODERS = [
    ("name", dict(name="vgg17"), "unknown encoder 'vgg17': the families are posenet, coords, vgg16"),
    ("name", dict(name="tv:"), "unknown encoder 'tv:'"),
    ("name", dict(name="timm:"), "unknown encoder 'timm:'"),
    ("name", dict(name="vgg16bn_wx"), "vgg16bn_w<width>"),
    ("name", dict(name="vgg16bn_w0"), "width of 1 or more"),
    ("name", dict(name="vgg16bn_w8_b6"), "1 to 5 blocks"),
    ("name", dict(name=None), "None"),
    ("weights", dict(name="vgg16", weights="bogus"), "vgg16 has weights 'random' or 'imagenet' or 'hed', not 'bogus'"),
    ("weights", dict(name="posenet", weights="random"), "posenet has weights 'none', not 'random'"),
    ("weights", dict(name="resnet152", weights="hed"), "not 'hed'"),
    ("weights", dict(name="vgg16bn_w8", weights="sod:"), r"'sod:<key>' or 'seg:<key>', not 'sod:'"),
    ("weights", dict(name="tv:resnet18", weights="file:"), r"'file:<key>', not 'file:'"),
    ("padding", dict(name="vgg16", padding="mirror"), "unknown padding mode 'mirror': choose one of zeros, reflect"),
    ("padding", dict(name="vgg16", padding="canvas:grey"), "'canvas:grey': write canvas:<number in"),
    ("padding", dict(name="vgg16", padding=0), "0 is not a padding mode"),
    ("taps", dict(name="vgg16", taps=()), "module names"),
    ("taps", dict(name="vgg16", taps=("3", "")), "module names"),
    ("taps", dict(name="vgg16", taps="3"), "module names"),
    ("taps", dict(name="vgg16", taps=(3,)), "module names"),
    ("input", dict(name="vgg16", input="bgr"), "unknown input convention 'bgr': choose one of auto, unit, imagenet"),
    ("position", dict(name="vgg16", position="removed"), "unknown position mode 'removed': choose one of kept, zeroed"),
]


@pytest.mark.parametrize("field, fields, match", BAD_ENCODERS, ids=[f"{f}-{i}" for i, (f, _, _) in
                                                                    enumerate(BAD_ENCODERS)])
def test_a_bad_encoder_spec_fails_when_made(field, fields, match):
    with pytest.raises(SpecError, match=match) as err:
        EncoderSpec(**fields)
    assert isinstance(err.value, ValueError) and err.value.field == field
    assert str(err.value).startswith(f"EncoderSpec {field}: ")


BAD_IMAGE_SETS = [
    ("name", dict(name="", kind="black"), "not a name"),
    ("kind", dict(name="x", kind="mandelbrot"), "unknown image-set kind 'mandelbrot': choose one of dead_leaves"),
    ("n", dict(name="x", kind="dead_leaves", n=0), "0 is not a whole number 1 or more"),
    ("n", dict(name="x", kind="dead_leaves", n=2.5), "2.5 is not a whole number"),
    ("n", dict(name="x", kind="noise", n=True), "True is not a whole number"),
    ("seed", dict(name="x", kind="noise", seed=-1), "-1 is not a whole number 0 or more"),
    ("dataset", dict(name="x", kind="folder"), "None is not the dataset a folder set is read from"),
    ("dataset", dict(name="x", kind="sod_folder", dataset=""), "the dataset a sod_folder set"),
    ("dataset", dict(name="x", kind="voc", n=None), "the dataset a voc set"),
    ("dataset", dict(name="x", kind="black", dataset=3), "not a dataset name"),
]


@pytest.mark.parametrize("field, fields, match", BAD_IMAGE_SETS, ids=[f"{f}-{i}" for i, (f, _, _) in
                                                                      enumerate(BAD_IMAGE_SETS)])
def test_a_bad_image_set_spec_fails_when_made(field, fields, match):
    with pytest.raises(SpecError, match=match) as err:
        ImageSetSpec(**fields)
    assert err.value.field == field and str(err.value).startswith(f"ImageSetSpec {field}: ")


BAD_READOUTS = [(name, value) for name in ("n_layers", "kernel", "feature_size", "epochs", "batch_size", "lr_step")
                for value in (0, -1, 1.5, None)]
BAD_READOUTS += [("padding", -1), ("padding", 0.5), ("width", 0), ("width", 2.0), ("lr", 0), ("lr", -0.1),
                 ("lr", "0.1"), ("lr_gamma", 0), ("momentum", -0.1), ("weight_decay", -1e-4), ("weight_decay", None)]


@pytest.mark.parametrize("field, value", BAD_READOUTS)
def test_a_bad_readout_spec_fails_when_made(field, value):
    with pytest.raises(SpecError, match=rf"^ReadoutSpec {field}: {value!r} is not a") as err:
        ReadoutSpec(**{field: value})
    assert err.value.field == field


SCENES = ImageSetSpec("s", "sod_scenes", n=2)
BAD_DOWNSTREAM = [(name, value) for name in ("width", "image_size", "epochs", "batch_size", "seeds")
                  for value in (0, -2, 1.5)]
BAD_DOWNSTREAM += [("blocks", 0), ("blocks", 6), ("crop_shift", -16), ("lr", 0), ("sod_tests", ()),
                   ("sod_train", ImageSetSpec("g", "seg_scenes", n=2)), ("sod_tests", (SCENES, "photos")),
                   ("seg_train", SCENES), ("seg_test", ImageSetSpec("b", "black"))]


@pytest.mark.parametrize("field, value", BAD_DOWNSTREAM)
def test_a_bad_downstream_spec_fails_when_made(field, value):
    with pytest.raises(SpecError, match=rf"^DownstreamSpec {field}: ") as err:
        DownstreamSpec(**{field: value})
    assert err.value.field == field


def test_what_the_specs_accept():
    """The edges of what each field takes, and a list of taps (or of test sets) kept as a tuple."""
    spec = EncoderSpec("vgg16", "random", "canvas:0.5", taps=["3", "8"])
    assert spec.taps == ("3", "8") and hash(spec) == hash(EncoderSpec("vgg16", "random", "canvas:0.5", ("3", "8")))
    for fields in (dict(name="tv:resnet18", weights="file:/x.pth"), dict(name="vgg16bn_w2_b1", weights="seg:k"),
                   dict(name="timm:vit_tiny_patch16_224", position="shuffled"), dict(name="vgg16", padding="canvas:mean"),
                   dict(name="posenet", weights="none", padding="reflect", position="zeroed")):  # the build refuses these
        EncoderSpec(**fields)
    ImageSetSpec("all", "folder", n=None, dataset="DUTS-TR")
    ImageSetSpec("one", "black", n=None)
    ReadoutSpec(n_layers=3, kernel=1, padding=0, epochs=1, batch_size=1, lr_step=1, width=1, momentum=0, weight_decay=0)
    ds = DownstreamSpec(width=1, blocks=1, crop_shift=0, sod_tests=[SCENES])
    assert ds.sod_tests == (SCENES,)
    assert set(IMAGE_KINDS) >= {"dead_leaves", "photo_crops", "black", "white", "noise", "folder", "objects",
                                "object_backgrounds", "sod_folder", "voc", "sod_scenes", "sod_scenes_anywhere", "seg_scenes"}


def test_the_image_kinds_are_those_the_study_makes():
    """Every kind the specs accept is made by images.build_image_set or downstream.task_data, and no other."""
    from posenc_utils.studies import downstream
    from posenc_utils.engine import images

    assert set(specs.SOD_IMAGE_KINDS + specs.SEG_IMAGE_KINDS) == set(downstream.GENERATED) | {"sod_folder", "voc"}
    assert set(images.OBJECT_KINDS) <= set(specs.PROBE_IMAGE_KINDS)
    for kind in specs.PROBE_IMAGE_KINDS:
        if kind not in specs.FOLDER_IMAGE_KINDS:
            assert images.build_image_set(ImageSetSpec(kind, kind, n=1), 16).n == 1


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_is_made_of_valid_specs(profile):
    prof = get_profile(profile)
    ds = prof.downstream
    for spec in (*prof.encoders, prof.train_set, *prof.test_sets, prof.readout, ds, ds.sod_train, *ds.sod_tests,
                 ds.seg_train, ds.seg_test):
        assert dataclasses.replace(spec) == spec  # made again, checked again
    from posenc_utils.studies import budget

    assert budget.larger_budget(prof).readout.epochs >= prof.readout.epochs


# ---------------------------------------------------------------- nothing the study computes changes

# (spec, label, cache key of its fields), as computed before the specs moved out of posenc_utils.models.profiles
BEFORE = [
    (EncoderSpec("posenet", "none"), "PosENet", "5cca1347ffc03cb2"),
    (EncoderSpec("coords", "none"), "coordinates (x, y)", "541d78cf4c1a7698"),
    (EncoderSpec("vgg16", "imagenet"), "VGG16 (ImageNet)", "94cdc5718f02c366"),
    (EncoderSpec("vgg16", "random", "none"), "VGG16 (random init, padding none)", "2c48651c25263e84"),
    (EncoderSpec("vgg16", "hed", "canvas:mean", input="unit"), "VGG16 (HED, canvas mean, [0,1] input)", "8fa1e1559ec32cb3"),
    (EncoderSpec("resnet152", "imagenet", taps=families.RESNET152_AUTHORS_TAPS, input="unit"),
     "ResNet152 (ImageNet, taps layer1-4, [0,1] input)", "d0213871890e82f4"),
    (EncoderSpec("resnet152", "random", taps=families.RESNET152_FIVE_STAGES),
     "ResNet152 (random init, taps stem+layer1-4)", "347a0b186200ea97"),
    (EncoderSpec("resnet152", "random", "reflect", taps=("layer1", "layer2"), input="imagenet"),
     "ResNet152 (random init, padding reflect, taps layer1+layer2, ImageNet-normalized input)", "0a97d0046026ebc3"),
    (EncoderSpec("efficientnet_lite0", "imagenet"), "EfficientNet-Lite0 (ImageNet)", "d3fa24f7f5e4dc41"),
    (EncoderSpec("tv:resnet50", "file:/a/b/ck.pth"), "resnet50 (weights ck.pth)", "2fff478e972288e5"),
    (EncoderSpec("timm:vit_tiny_patch16_224", position="zeroed"),
     "timm vit_tiny_patch16_224 (random init, positional embedding zeroed)", "c0e1d760ed7ff507"),
    (EncoderSpec("timm:resnet18", "imagenet", "circular"), "timm resnet18 (ImageNet, padding circular)", "d77ebdab154243d3"),
    (EncoderSpec("vgg16bn_w8_b4", "seg:abc"), "VGG16-BN/8, 4 blocks (segmentation-trained here)", "9bf0d2f3ed27319b"),
    (EncoderSpec("vgg16bn_w64", "random"), "VGG16-BN (random init)", "7c55cce0ecf0c3a3"),
]


@pytest.mark.parametrize("spec, label, key", BEFORE, ids=[label for _, label, _ in BEFORE])
def test_labels_and_cache_keys_are_unchanged(spec, label, key):
    assert spec.label == label
    assert cache.make_key(cache.key_fields(spec)) == key


def test_the_other_properties_are_unchanged():
    assert EncoderSpec("vgg16", "imagenet").torchvision_imagenet_arch == "vgg16"
    assert EncoderSpec("tv:vgg11", "imagenet").torchvision_imagenet_arch == "vgg11"
    assert EncoderSpec("vgg16", "hed").torchvision_imagenet_arch is None
    assert [EncoderSpec(n, w).pretrained for n, w in (("vgg16", "hed"), ("tv:resnet18", "file:/x"),
                                                      ("vgg16", "random"), ("posenet", "none"))] == [True, True, False, False]
    assert [EncoderSpec.pretrained_weights(w) for w in ("imagenet", "hed", "file:/x", "random", "none", "sod:k")] \
        == [True, True, True, False, False, False]
    assert ReadoutSpec(n_layers=2, width=4).label == "2 layers, 3x3, pad 0, width 4"
    assert DownstreamSpec(width=8, blocks=4, sod_tests=(SCENES,)).label == "VGG16-BN/8, 4 blocks"


@pytest.mark.parametrize("text, expected", [
    ("tv:resnet50:random", EncoderSpec("tv:resnet50", "random")),
    ("timm:resnet18:imagenet:reflect", EncoderSpec("timm:resnet18", "imagenet", "reflect")),
    ("vgg16bn_w8:random:none", EncoderSpec("vgg16bn_w8", "random", "none")),
    ("posenet:none", EncoderSpec("posenet", "none")),
    ("vgg16", EncoderSpec("vgg16")),
])
def test_parse_is_unchanged(text, expected):
    assert EncoderSpec.parse(text) == expected


@pytest.mark.parametrize("text, match", [
    ("tv:", "write a tv model as 'tv:<model>"), ("timm::random", "write a timm model as"),
    ("vgg16:random:none:extra", "expected 'name"), ("vgg17", "unknown encoder 'vgg17'"),
    ("vgg16:bogus", "not 'bogus'"), ("vgg16:random:mirror", "unknown padding mode 'mirror'"),
    ("vgg16:file:/x.pth", "not 'file'"),  # a checkpoint goes to tv: or timm: models, as the weights 'file:<path>'
])
def test_parse_refuses_with_a_clear_message(text, match):
    with pytest.raises(ValueError, match=match):
        EncoderSpec.parse(text)


# ---------------------------------------------------------------- the registry


def test_the_registry_is_the_families_one():
    assert families.FAMILIES is specs.FAMILIES and families.family_of is family_of and families.Family is Family
    assert family_of("tv:resnet18").name == "tv:" and family_of("vgg16").label("vgg16") == "VGG16"
    with pytest.raises(ValueError, match="registered already"):
        register_family(families.FAMILIES["vgg16"])
    with pytest.raises(ValueError, match=r"unknown encoder 'alexnet': the families are .*\(see posenc_utils/models/families.py\)"):
        family_of("alexnet")


def test_an_empty_registry_says_what_to_import():
    """The specs alone (no family imported) make image sets and readouts, and refuse an encoder spec with the
    module to import; importing the families makes it."""
    code = ("from posenc_utils.primitives.specs import EncoderSpec, ImageSetSpec, ReadoutSpec\n"
            "ImageSetSpec('b', 'black'); ReadoutSpec()\n"
            "try:\n    EncoderSpec('vgg16')\nexcept RuntimeError as e:\n    print(e)\n"
            "import posenc_utils.models.families\nprint(EncoderSpec('vgg16').label)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "no encoder family is registered: import posenc_utils.models.families" in out
    assert out.strip().endswith("VGG16 (random init)")
