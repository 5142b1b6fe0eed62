"""The plain values every layer passes around: which encoder (:class:`EncoderSpec`), which images
(:class:`ImageSetSpec`), which readout (:class:`ReadoutSpec`) and which downstream network
(:class:`DownstreamSpec`), each checked when it is made.

A bad spec fails where it is written, with a :class:`SpecError` (a ValueError) naming the field,
its value and the values it may take, not deep inside a build. This module sits at the bottom of
the package (it imports only :mod:`posenc_utils.primitives.borders` and :mod:`posenc_utils.primitives.positions`), so
the encoder families, which build networks, live above it (:mod:`posenc_utils.models.families`) and
register themselves here (:func:`register_family`) when imported: an encoder spec reads its
family's name, weights and label from this registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Callable

from .borders import check_padding_mode
from .positions import check_position_mode

INPUTS = ("auto", "unit", "imagenet")
FEATURE_STORAGE = ("auto", "store", "memory", "recompute")  # where a run's features live (engine.features)

# Named tap sets of ResNet152 (module names of torchvision's resnet152); labels name them in short.
RESNET152_FIVE_STAGES = ("relu", "layer1", "layer2", "layer3", "layer4")  # the paper's text: five blocks
RESNET152_AUTHORS_TAPS = ("layer1", "layer2", "layer3", "layer4")  # the authors' released code: 3840 channels

# The kinds of image sets: those posenc_utils.engine.images builds for the probe, and the task sets (images with labels)
# posenc_utils.studies.downstream makes for notebook 05.
PROBE_IMAGE_KINDS = ("dead_leaves", "photo_crops", "black", "white", "noise", "folder", "objects", "object_backgrounds")
SOD_IMAGE_KINDS = ("sod_folder", "sod_scenes", "sod_scenes_anywhere")  # salient object detection: image and mask
SEG_IMAGE_KINDS = ("voc", "seg_scenes")  # semantic segmentation: image and class indices
IMAGE_KINDS = PROBE_IMAGE_KINDS + SOD_IMAGE_KINDS + SEG_IMAGE_KINDS
FOLDER_IMAGE_KINDS = ("folder", "sod_folder", "voc")  # read from a dataset's folder: ``dataset`` names it


class SpecError(ValueError):
    """A spec field given a value it cannot take, raised when the spec is made."""

    def __init__(self, spec: str, field: str, message: str):
        super().__init__(f"{spec} {field}: {message}")
        self.spec, self.field = spec, field


def _whole(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_int(spec: str, field: str, value: Any, minimum: int, maximum: int | None = None,
               optional: bool = False) -> None:
    """``value`` is a whole number in [minimum, maximum] (or None where ``optional``)."""
    if optional and value is None:
        return
    if not _whole(value) or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise SpecError(spec, field, f"{value!r} is not a whole number {bounds}"
                                     f"{' (or None)' if optional else ''}")


def _check_number(spec: str, field: str, value: Any, minimum: float, above: bool) -> None:
    """``value`` is a number above ``minimum`` (``above``) or at least ``minimum``."""
    if not isinstance(value, Real) or isinstance(value, bool) or not (value > minimum if above else value >= minimum):
        raise SpecError(spec, field, f"{value!r} is not a number {'above' if above else 'of at least'} {minimum:g}")


def _check_text(spec: str, field: str, value: Any, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise SpecError(spec, field, f"{value!r} is not {what} (a non-empty string)")


# ---------------------------------------------------------------- the registry of encoder families


def _none(_spec) -> None:
    return None


def _any_padding(_net, _mode: str) -> None:
    """Every padding mode applies (set_padding switches every padded convolution and pooling)."""


def _any_name(_name: str) -> None:
    """Every name of the family is well formed."""


@dataclass(frozen=True)
class Family:
    """One kind of encoder, declared once (in :mod:`posenc_utils.models.families`, which registers it here).

    Its callables take and return networks (torch modules): they are typed loosely here, where no
    network is built."""

    name: str  # the encoder name, or the prefix every name of the family starts with (prefix=True)
    label: Callable[[str], str]  # encoder name -> the architecture as tables name it
    weights: tuple[str, ...]  # the weights it takes; "<key>" stands for any non-empty text
    build: Callable[[EncoderSpec, int, int], Any]  # (spec, seed, image size) -> families.Built, at zero padding
    own_input: Callable[[EncoderSpec], tuple[Callable, str]]  # the input convention its weights were trained with
    bare: Callable[[EncoderSpec, int], Any]  # the plain network (an nn.Module or None) `make bench` times
    prefix: bool = False
    network: bool = True  # False: a control with no network (nothing to pad, only its label in tables)
    no_padding: str | None = None  # why padding "none" cannot apply to any network of the family
    try_no_padding: bool = False  # padding "none": run the network once and refuse it if the forward pass fails
    size_dependent: bool = False  # the network (its taps) depends on the image size: built once per size
    cpu_batch: int = 8  # images per forward pass on a CPU (the fastest on 2 cores, measured by `make bench`)
    paper_model: str | None = None  # the paper's row (Table 1) this family is compared with
    torchvision_arch: Callable[[str], str | None] = _none  # the torchvision model whose ImageNet file "imagenet" reads
    weights_file: Callable[[EncoderSpec], Path | None] = _none  # the file its (non-random) weights are read from
    where_from: Callable[[EncoderSpec], str] = lambda spec: ""  # how to get that file when it is missing
    key_by_weights_file: bool = False  # the file's name does not pin its content: cached features are keyed by its checksum
    padding_check: Callable[[Any, str], None] = _any_padding  # (network, mode): raises PaddingNotSupportedError where a mode cannot apply
    check_name: Callable[[str], None] = _any_name  # raises ValueError for a malformed name of a prefix family

    def takes(self, weights: str) -> bool:
        """Whether ``weights`` is one this family can be built with."""
        for w in self.weights:
            stem = w.removesuffix("<key>")
            if weights == w or (w.endswith("<key>") and weights.startswith(stem) and len(weights) > len(stem)):
                return True
        return False


FAMILIES: dict[str, Family] = {}  # name -> family, filled by posenc_utils.models.families when it is imported


def register_family(family: Family) -> Family:
    """Add ``family`` to the registry (a name is registered once)."""
    if family.name in FAMILIES:
        raise ValueError(f"an encoder family named {family.name!r} is registered already")
    FAMILIES[family.name] = family
    return family


def family_of(name: str) -> Family:
    """The family of an encoder name (``tv:resnet50`` -> ``tv:``), or a ValueError listing the families."""
    if not FAMILIES:
        raise RuntimeError("no encoder family is registered: import posenc_utils.models.families (or profiles, encoders or "
                           "experiments, which import it) before making or labelling an EncoderSpec")
    if name in FAMILIES and not FAMILIES[name].prefix:
        return FAMILIES[name]
    for fam in FAMILIES.values():
        if fam.prefix and name.startswith(fam.name) and len(name) > len(fam.name):
            return fam
    known = ", ".join(f"{f.name}<...>" if f.prefix else f.name for f in FAMILIES.values())
    raise ValueError(f"unknown encoder {name!r}: the families are {known} (see posenc_utils/models/families.py)")


# ---------------------------------------------------------------- the specs


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder to probe: architecture, weights, padding mode, taps and input convention."""

    name: str  # a family of posenc_utils.models.families: posenet | coords | vgg16 | resnet152 | efficientnet_lite0 | vgg16bn_w<width> | tv:<model> | timm:<model>
    # random | imagenet | hed | sod:<key> | seg:<key> (vgg16bn_w: trained in notebook 05) | file:<path> (tv:, timm:
    # a checkpoint of one's own: a state dict or a whole saved module)
    weights: str = "random"
    padding: str = "zeros"  # zeros | none | reflect | replicate | circular | canvas:<value in [0,1]> | canvas:mean
    taps: tuple[str, ...] | None = None  # module names to tap; None: the encoder's defaults
    # How images in [0, 1] are fed: "auto" is the weights' own convention (ImageNet mean/std for
    # torchvision ImageNet weights, Caffe BGR for HED, (x-127)/128 for EfficientNet-Lite, [0, 1] for
    # random weights); "unit" feeds [0, 1] to any weights, as the authors' released code did;
    # "imagenet" applies ImageNet mean/std.
    input: str = "auto"
    # A transformer's positional embedding at inference: kept | zeroed | shuffled (posenc_utils.primitives.positions; the
    # transformer's analogue of the padding modes).
    position: str = "kept"

    def __post_init__(self) -> None:
        """Each field on its own (whether a padding or position mode applies to the network is the build's to say:
        a table cell records the reason when it does not)."""
        if not isinstance(self.name, str):
            raise SpecError("EncoderSpec", "name", f"{self.name!r} is not an encoder name (a string)")
        try:
            fam = family_of(self.name)
            fam.check_name(self.name)
        except ValueError as e:
            raise SpecError("EncoderSpec", "name", str(e)) from None
        if not isinstance(self.weights, str) or not fam.takes(self.weights):
            raise SpecError("EncoderSpec", "weights",
                            f"{self.name} has weights {' or '.join(map(repr, fam.weights))}, not {self.weights!r}")
        if not isinstance(self.padding, str):
            raise SpecError("EncoderSpec", "padding", f"{self.padding!r} is not a padding mode (a string)")
        try:
            check_padding_mode(self.padding)
        except ValueError as e:
            raise SpecError("EncoderSpec", "padding", str(e)) from None
        if isinstance(self.taps, list):
            object.__setattr__(self, "taps", tuple(self.taps))
        if self.taps is not None and (not isinstance(self.taps, tuple) or not self.taps
                                      or not all(isinstance(t, str) and t for t in self.taps)):
            raise SpecError("EncoderSpec", "taps", f"{self.taps!r}: give a tuple of module names (non-empty strings), "
                                                   f"or None for the family's default taps")
        if self.input not in INPUTS:
            raise SpecError("EncoderSpec", "input",
                            f"unknown input convention {self.input!r}: choose one of {', '.join(INPUTS)}")
        try:
            check_position_mode(self.position)
        except ValueError as e:
            raise SpecError("EncoderSpec", "position", str(e)) from None

    @property
    def label(self) -> str:
        """Row label used in every table and figure, always naming the weights (and any non-default
        padding, taps or input convention)."""
        fam = family_of(self.name)
        arch = fam.label(self.name)
        if not fam.network:  # a control: no weights, no padding
            return arch
        task = {"sod": "SOD-trained here", "seg": "segmentation-trained here"}.get(self.weights.split(":")[0])
        if self.weights.startswith("file:"):
            task = f"weights {Path(self.weights.split(':', 1)[1]).name}"
        weights = task or {"random": "random init", "imagenet": "ImageNet", "hed": "HED"}.get(self.weights, self.weights)
        extra = {"zeros": ""}.get(self.padding, f", padding {self.padding}")
        if self.padding.startswith("canvas:"):
            extra = f", canvas {self.padding.split(':', 1)[1]}"
        if self.taps is not None:
            named = {RESNET152_AUTHORS_TAPS: "layer1-4", RESNET152_FIVE_STAGES: "stem+layer1-4"}
            extra += f", taps {named.get(tuple(self.taps), '+'.join(self.taps))}"
        if self.input != "auto":
            extra += {"unit": ", [0,1] input", "imagenet": ", ImageNet-normalized input"}.get(self.input, self.input)
        if self.position != "kept":
            extra += f", positional embedding {self.position}"
        return f"{arch} ({weights}{extra})"

    @property
    def pretrained(self) -> bool:
        """Weights learned on a task (ImageNet, HED's edges from ImageNet, or a checkpoint of one's own): the
        paper's kind of encoder, or a stand-in for it. Random-init rows and PosENet are not."""
        return self.pretrained_weights(self.weights)

    @staticmethod
    def pretrained_weights(weights: str) -> bool:
        """:attr:`pretrained` of any spec with these weights (a table's ``weights`` column, whatever the encoder)."""
        return weights in ("imagenet", "hed") or weights.startswith("file:")

    @property
    def torchvision_imagenet_arch(self) -> str | None:
        """The torchvision model whose ImageNet weights file this spec loads, or None."""
        return family_of(self.name).torchvision_arch(self.name) if self.weights == "imagenet" else None

    @classmethod
    def parse(cls, text: str) -> "EncoderSpec":
        """Parse ``name[:weights[:padding]]``, e.g. ``tv:resnet50:random`` or ``vgg16:hed``."""
        parts = text.split(":")
        if f"{parts[0]}:" in FAMILIES:  # a family named by a prefix with a colon: tv:<model>, timm:<model>
            if len(parts) < 2 or not parts[1]:
                raise ValueError(f"{text!r}: write a {parts[0]} model as '{parts[0]}:<model>[:weights[:padding]]'")
            parts = [f"{parts[0]}:{parts[1]}"] + parts[2:]
        if len(parts) > 3:
            raise ValueError(f"{text!r}: expected 'name[:weights[:padding]]' (a checkpoint file: give it as the "
                             f"weights 'file:<path>', or to the probe command as WEIGHTS=<path>)")
        return cls(*parts)


@dataclass(frozen=True)
class ImageSetSpec:
    """A set of images: how it is made (``kind``), how many, and with which seed."""

    name: str  # the label used in tables (photos, black, white, noise, DUTS-TR, PASCAL-S, ...)
    kind: str  # one of IMAGE_KINDS: dead_leaves | photo_crops | black | white | noise | folder | objects | ...
    n: int | None = 1  # number of images (None: all the images of a folder)
    seed: int = 0
    dataset: str | None = None  # for the folder kinds (FOLDER_IMAGE_KINDS): a key of datasets.DATASETS

    def __post_init__(self) -> None:
        _check_text("ImageSetSpec", "name", self.name, "a name")
        if self.kind not in IMAGE_KINDS:
            raise SpecError("ImageSetSpec", "kind",
                            f"unknown image-set kind {self.kind!r}: choose one of {', '.join(IMAGE_KINDS)}")
        _check_int("ImageSetSpec", "n", self.n, 1, optional=True)
        _check_int("ImageSetSpec", "seed", self.seed, 0)
        if self.kind in FOLDER_IMAGE_KINDS:
            _check_text("ImageSetSpec", "dataset", self.dataset, f"the dataset a {self.kind} set is read from")
        elif self.dataset is not None and not isinstance(self.dataset, str):
            raise SpecError("ImageSetSpec", "dataset", f"{self.dataset!r} is not a dataset name (a string) or None")


@dataclass(frozen=True)
class ReadoutSpec:
    """The position encoding module (PEM) and how it is trained (PAPER.md section 1 and 3)."""

    n_layers: int = 1
    kernel: int = 3
    padding: int = 0
    feature_size: int = 28
    epochs: int = 15
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 10  # epochs before the learning rate is multiplied by lr_gamma
    lr_gamma: float = 0.1
    # Channels of each intermediate layer, per head, when n_layers > 1. None: as many as the input
    # (the paper's C -> C); a narrower width is a labelled deviation where C -> C does not fit.
    width: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_layers", "kernel", "feature_size", "epochs", "batch_size", "lr_step"):
            _check_int("ReadoutSpec", name, getattr(self, name), 1)
        _check_int("ReadoutSpec", "padding", self.padding, 0)
        _check_int("ReadoutSpec", "width", self.width, 1, optional=True)
        _check_number("ReadoutSpec", "lr", self.lr, 0, above=True)
        _check_number("ReadoutSpec", "lr_gamma", self.lr_gamma, 0, above=True)
        _check_number("ReadoutSpec", "momentum", self.momentum, 0, above=False)
        _check_number("ReadoutSpec", "weight_decay", self.weight_decay, 0, above=False)

    @property
    def label(self) -> str:
        k = f"{self.kernel}x{self.kernel}"
        width = f", width {self.width}" if self.width and self.n_layers > 1 else ""
        return f"{self.n_layers} layer{'s' if self.n_layers > 1 else ''}, {k}, pad {self.padding}{width}"


@dataclass(frozen=True)
class DownstreamSpec:
    """Notebook 05: the encoder-decoder trained from scratch for salient object detection (SOD) and
    semantic segmentation, with and without padding (PAPER.md Table 5), and its data.

    The network has VGG16's layout (five blocks of 2, 2, 3, 3, 3 3x3 convolutions, 2x2 max pooling
    between blocks) with ``width`` channels in the first block (VGG16: 64; then x2, x4, x8, x8), each
    convolution followed by BatchNorm (as torchvision's ``vgg16_bn``), and an HED-style decoder: a 1x1
    side output per block, resampled to the image and fused by a 1x1 convolution. "VGG16-BN/8" is that
    network at 1/8 of VGG16's width (8 channels in the first block)."""

    width: int = 64
    image_size: int = 224
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3  # Adam
    sod_train: ImageSetSpec = ImageSetSpec("MSRA-B", "sod_folder", n=None, dataset="MSRA-B")
    sod_tests: tuple[ImageSetSpec, ...] = (
        ImageSetSpec("ECSSD", "sod_folder", n=None, dataset="ECSSD"),
        ImageSetSpec("PASCAL-S", "sod_folder", n=None, dataset="PASCAL-S"),
        ImageSetSpec("DUT-OMRON", "sod_folder", n=None, dataset="DUT-OMRON"),
    )
    seg_train: ImageSetSpec = ImageSetSpec("VOC2012 train", "voc", n=None, dataset="VOC2012:train")
    seg_test: ImageSetSpec = ImageSetSpec("VOC2012 val", "voc", n=None, dataset="VOC2012:val")
    # Fig 1: how far the copy is cropped (a multiple of the network's stride, 16, so that a network
    # without padding would see the same pooling grid)
    crop_shift: int = 16
    # Networks trained per task and padding, from seeds seed, seed+1, ...: claim 9 is decided over all of them (a
    # network's score moves with its training's round-off by as much as padding moves it); Tables 5 and 6 and Fig 1
    # show the first.
    seeds: int = 1
    # VGG16's first ``blocks`` blocks (5: all of it). Without padding, the network sees the scene around the image to
    # the depth of its deepest block (5 blocks: 98 px on each side, 4: 46): a shallower network costs far less.
    blocks: int = 5

    def __post_init__(self) -> None:
        for name in ("width", "image_size", "epochs", "batch_size", "seeds"):
            _check_int("DownstreamSpec", name, getattr(self, name), 1)
        _check_int("DownstreamSpec", "blocks", self.blocks, 1, 5)
        _check_int("DownstreamSpec", "crop_shift", self.crop_shift, 0)
        _check_number("DownstreamSpec", "lr", self.lr, 0, above=True)
        if isinstance(self.sod_tests, list):
            object.__setattr__(self, "sod_tests", tuple(self.sod_tests))
        for name, kinds in (("sod_train", SOD_IMAGE_KINDS), ("sod_tests", SOD_IMAGE_KINDS),
                            ("seg_train", SEG_IMAGE_KINDS), ("seg_test", SEG_IMAGE_KINDS)):
            value = getattr(self, name)
            sets = value if name == "sod_tests" and isinstance(value, tuple) else (value,)
            if name == "sod_tests" and not (isinstance(value, tuple) and value):
                raise SpecError("DownstreamSpec", name, f"{value!r}: give a tuple of at least one ImageSetSpec")
            for s in sets:
                if not isinstance(s, ImageSetSpec) or s.kind not in kinds:
                    raise SpecError("DownstreamSpec", name, f"{s!r}: give an ImageSetSpec of kind {' or '.join(kinds)}")

    @property
    def label(self) -> str:
        base = "VGG16-BN" if self.width == 64 else f"VGG16-BN/{64 // self.width}"
        return base if self.blocks == 5 else f"{base}, {self.blocks} blocks"

    @property
    def encoder_name(self) -> str:
        """The probe family name of this network's encoder (posenc_utils.models.families: ``vgg16bn_w<width>[_b<blocks>]``)."""
        return f"vgg16bn_w{self.width}" + ("" if self.blocks == 5 else f"_b{self.blocks}")
