"""The three run profiles (``quick`` | ``offline`` | ``paper``): the single source of every setting.

A notebook picks a profile by name and may override fields; nothing else in the study holds
a size, a count, an epoch number or an encoder list.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

# Importing the families registers them: the encoder specs below check their names and weights against them.
from .families import RESNET152_AUTHORS_TAPS, RESNET152_FIVE_STAGES
from .networks import timm_weights_file
from ..primitives import paths
# The specs live in posenc_utils.primitives.specs; they are imported from here by most of the study, and stay importable so.
from ..primitives.specs import FEATURE_STORAGE, INPUTS, DownstreamSpec, SpecError, EncoderSpec, ImageSetSpec, ReadoutSpec  # noqa: F401

PROFILES = ("quick", "offline", "paper")


# Notebook 07's networks beside the study's encoders (beyond the paper): a ViT (absolute embedding), a Swin
# Transformer (relative bias), a ConvNeXt (a CNN of the 2020s) and EVA-02 (absolute and rotary embeddings).
SINCE_NETWORKS = ("vit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "convnext_atto", "eva02_tiny_patch14_224")


# The quick profile's atlas (CI): a CNN, a ViT and an MLP-Mixer.
QUICK_ATLAS = ("tv:resnet18", "timm:vit_tiny_patch16_224", "timm:mixer_s16_224")


def since_models() -> tuple[EncoderSpec, ...]:
    """Notebook 07's networks: timm's pretrained weights where their file is on this machine
    (:func:`~posenc_utils.models.networks.timm_weights_file`), else random init (offline, none can be had)."""
    return tuple(EncoderSpec(f"timm:{name}", "imagenet" if timm_weights_file(name).exists() else "random")
                 for name in SINCE_NETWORKS)


@dataclass(frozen=True)
class Profile:
    """Everything that decides one run of the study."""

    name: str
    description: str
    image_size: int
    train_set: ImageSetSpec
    test_sets: tuple[ImageSetSpec, ...]
    encoders: tuple[EncoderSpec, ...]
    readout: ReadoutSpec = field(default_factory=ReadoutSpec)
    seed: int = 0
    # Readout seeds of Tables 1 and 4 (claims 1-4 and 7): seed, seed+1, ... Each seed is a readout trained
    # and cached of its own; random-init encoders keep their weights (``seed``): a new encoder seed is a new
    # feature extraction, which the time budget does not allow (see the claims report).
    seeds: int = 1
    # Readout seeds of random-init rows in Tables 1 and 4 (they decide no claim; each seed of ResNet152's 4160
    # channels is ~45 s offline): the first ``random_init_seeds`` of ``seeds``.
    random_init_seeds: int = 1
    extract_batch_size: int | None = None  # images per encoder forward pass; None: features.default_batch_size
    feature_dtype: str = "float16"  # on-disk dtype of cached features (halves disk and I/O)
    # Where features live (posenc_utils.engine.features.STORAGE): "store" (a file in the cache, read by every
    # readout), "memory" (held in the device's memory), "recompute" (the encoder run again each epoch, as the
    # authors' code), or "auto": per encoder, by its size against the free disk and GPU memory (the run's plan says
    # which and why). The numbers are the same either way.
    feature_storage: str = "store"
    # How the features are scaled before the PEM (posenc_utils.engine.readout.SCALINGS): "tap" centres each channel and
    # divides every channel of a tap by the tap's pooled standard deviation (training images). An affine map per
    # channel the first convolution could absorb, so it changes no capacity, only the conditioning of SGD:
    # random-init ResNet152 activations reach 1e8 and diverge without it. The authors' code feeds raw features
    # ("none"); the paper profile does the same.
    feature_scaling: str = "tap"
    # Notebook 03. Table 4 runs at this image size (None: image_size); VGG16 without padding needs
    # at least 196 px, so the quick profile's 64 px images cannot hold it.
    table4_image_size: int | None = None
    table4_train_n: int | None = None  # Table 4 trains on the first n training images (None: all)
    # The padding-mode and canvas experiments (beyond the paper) build many encoder variants: they run
    # on the first ``ablation_train_n`` training images and ``ablation_test_n`` photos (None: all).
    ablation_train_n: int | None = None
    ablation_test_n: int | None = None
    canvas_values: tuple[str, ...] = ("0", "0.5", "1", "mean")  # image units; "mean": each image's mean colour
    # Notebook 04. Tables 2 and 3 train on the first ``capacity_train_n`` training images (None: all);
    # stacked readout layers are ``readout_width`` channels wide per head (None: C -> C, the paper's).
    capacity_train_n: int | None = None
    readout_width: int | None = None
    # Claim 5's width sweep: Table 2a's stacked readouts at each of these widths per head (None: C -> C), the depth
    # part decided at the widest; and the budget curve's pretrained VGG16 up to ``curve_max_steps``. Both run in
    # notebook 04 where ``extended_in_main``, else as their own command (`make extended`, posenc_utils.studies.extended),
    # whose committed results notebook 04 reads where they are current.
    width_sweep: tuple[int | None, ...] = ()
    extended_in_main: bool = True
    # Claim 8: the Table 1 readouts on this many generated scenes of an object on a textured background and on the
    # same backgrounds without the object (posenc_utils.engine.images.OBJECT_KINDS).
    object_scenes: int = 60
    # The training-budget check of the verdicts (posenc_utils.studies.budget): the claim-deciding readouts again with
    # ``budget_factor`` times the epochs (the learning-rate drop at the same fraction of training), one seed;
    # and the budget curve on the first ``curve_train_n`` training images and on all, PosENet up to the
    # paper's 4,950 steps (``curve_max_steps``) on the few images.
    budget_factor: float = 2.0
    curve_train_n: int | None = None
    curve_max_steps: int = 4950
    # Notebook 05: the downstream tasks (Tables 5 and 6, Fig 1).
    downstream: DownstreamSpec = field(default_factory=DownstreamSpec)
    # Notebook 07 (beyond the paper: position in networks since the paper, posenc_utils.studies.since): the study's
    # encoders and ``since_models``, the input-size sweep at the image size plus each of ``size_sweep_offsets`` (on the
    # ablation sets). In the main job where ``since_in_main``, else its own command (`make since`), whose committed
    # results notebook 07 reads.
    since_models: tuple[EncoderSpec, ...] = field(default_factory=since_models)
    size_sweep_offsets: tuple[int, ...] = (0, 1, 8)
    since_in_main: bool = True
    # Notebook 08 (beyond the paper: the position atlas, posenc_utils.studies.atlas): ``atlas_models`` (empty: the
    # default list, posenc_utils/studies/atlas_models.csv), each model's card made with readouts trained on the first
    # ``atlas_train_n`` training images (None: all; a lighter card, labelled); in the main job where ``atlas_in_main``,
    # else its own command (`make atlas`), whose committed results notebook 08 reads.
    atlas_models: tuple[str, ...] = ()
    atlas_train_n: int | None = None
    atlas_in_main: bool = True
    # What a paper test set is called here, for "paper vs reproduced" (our name -> paper's name).
    paper_test_names: tuple[tuple[str, str], ...] = (
        ("photos", "PASCAL-S"), ("PASCAL-S", "PASCAL-S"), ("black", "black"), ("white", "white"), ("noise", "noise"),
    )

    @property
    def natural_test_set(self) -> str:
        """The name of the profile's natural test images (its first test set: PASCAL-S, or the photo crops
        standing in for it), which every table, figure and claim reads first."""
        return self.test_sets[0].name

    @property
    def seed_values(self) -> tuple[int, ...]:
        """The readout seeds of the tables that report intervals over seeds."""
        return tuple(range(self.seed, self.seed + self.seeds))

    def seeds_for(self, spec: EncoderSpec) -> tuple[int, ...]:
        """The readout seeds of ``spec``'s rows: all of them for PosENet and pretrained encoders (they decide the
        claims), the first ``random_init_seeds`` for random-init rows."""
        decides = spec.name == "posenet" or spec.pretrained
        return self.seed_values if decides else self.seed_values[:max(1, self.random_init_seeds)]

    def with_overrides(self, **changes) -> "Profile":
        """A copy with some fields replaced (``readout`` may be given as a dict of its fields)."""
        for name in ("readout", "downstream"):
            if isinstance(changes.get(name), dict):
                changes[name] = dataclasses.replace(getattr(self, name), **changes[name])
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        if self.feature_storage not in FEATURE_STORAGE:
            raise SpecError(f"feature_storage={self.feature_storage!r}: choose one of {', '.join(FEATURE_STORAGE)}")


def _scene_tasks(size: int, train_n: int, test_n: int, **extra) -> DownstreamSpec:
    """Generated scenes (see :mod:`posenc_utils.studies.downstream`) in place of the paper's datasets."""
    return DownstreamSpec(
        image_size=size,
        sod_train=ImageSetSpec("SOD scenes", "sod_scenes", n=train_n, seed=0),
        sod_tests=(ImageSetSpec("scenes, centre-biased", "sod_scenes", n=test_n, seed=1),
                   ImageSetSpec("scenes, placed anywhere", "sod_scenes_anywhere", n=test_n, seed=2)),
        seg_train=ImageSetSpec("layout scenes", "seg_scenes", n=train_n, seed=0),
        seg_test=ImageSetSpec("layout scenes", "seg_scenes", n=test_n, seed=1),
        **extra,
    )


SYNTHETIC_TESTS = (
    ImageSetSpec("black", "black"),
    ImageSetSpec("white", "white"),
    ImageSetSpec("noise", "noise", seed=1),
)

OFFLINE_ENCODERS = (
    EncoderSpec("posenet", "none"),
    EncoderSpec("vgg16", "hed"),
    EncoderSpec("efficientnet_lite0", "imagenet"),
    EncoderSpec("vgg16", "random"),
    EncoderSpec("resnet152", "random"),
)


def _quick() -> Profile:
    return Profile(
        name="quick",
        description="CI-sized smoke run: 64 px images, 32 training and 8 test photos, 2 epochs",
        image_size=64,
        train_set=ImageSetSpec("dead_leaves", "dead_leaves", n=32, seed=0),
        test_sets=(ImageSetSpec("photos", "photo_crops", n=8, seed=0),) + SYNTHETIC_TESTS,
        encoders=OFFLINE_ENCODERS,
        readout=ReadoutSpec(epochs=2, batch_size=8),
        table4_image_size=196,
        ablation_train_n=16,
        ablation_test_n=4,
        canvas_values=("0", "1", "mean"),
        readout_width=4,
        width_sweep=(4, 8),
        object_scenes=8,
        curve_train_n=16,
        curve_max_steps=64,
        downstream=_scene_tasks(32, 32, 8, width=4, epochs=1, batch_size=8, seeds=2, blocks=4),
        seeds=2,
        atlas_models=QUICK_ATLAS,
    )


def _offline() -> Profile:
    return Profile(
        name="offline",
        description=(
            "the paper's settings on what can be had offline: 224 px, 500 generated dead-leaves "
            "training images, 60 photo crops + black/white/noise for testing, 15 epochs"
        ),
        image_size=224,
        train_set=ImageSetSpec("dead_leaves", "dead_leaves", n=500, seed=0),
        test_sets=(ImageSetSpec("photos", "photo_crops", n=60, seed=0),) + SYNTHETIC_TESTS,
        encoders=OFFLINE_ENCODERS,
        # Notebook 03 within its 5-minute budget on 2 cores (measured: see the README): every padding
        # variant of every encoder is a new feature extraction.
        table4_train_n=100,
        # The padding-mode and canvas experiments on Table 4's sets (100 training images, all 60 photos) with the
        # encoder's readout seeds: measured here, their intervals on the mean SPC over patterns are about +-0.05
        # (VGG16 (HED): zeros +-0.044, reflect +-0.054; EfficientNet-Lite0: +-0.062, +-0.048).
        ablation_train_n=100,
        canvas_values=("0", "1", "mean"),
        # Tables 2 and 3 train on all of Table 1's images (its features and its 1-layer 3x3 readout are theirs).
        # C -> C stacked layers on 1472 channels are ~1e15 operations per row: a width of 4 per head fits.
        readout_width=4,
        # The width sweep (claim 5) and the VGG16 curve to 4,950 steps take about 2 hours on 2 cores: `make extended`.
        width_sweep=(4, 16, 64),
        extended_in_main=False,
        since_in_main=False,  # notebook 07's networks and sweeps: `make since` (see DEVELOPERS.md)
        # The atlas's 27 networks in an hour on 2 cores: readouts on 200 training images (a full card was 128 s for
        # ResNet18, measured here), `make atlas` with committed results.
        atlas_train_n=200,
        atlas_in_main=False,
        curve_train_n=100,  # Table 4's training images: the curve's small set
        # Notebook 05 within its budget: the network without padding sees the scene around the image, as deep as
        # its deepest block reaches (all five blocks: 98 px on each side, 12x the arithmetic of the padded network at
        # 64 px; the first four: 46 px, 3.5x). Measured here (AMD EPYC, one thread), an epoch of the SOD networks
        # with and without padding: 5 blocks 3.0 + 9.6 s, 4 blocks 0.8 + 3.0 s.
        downstream=_scene_tasks(64, 256, 100, width=8, epochs=8, seeds=3, blocks=4),
        seeds=3,
    )


def _paper() -> Profile:
    return Profile(
        name="paper",
        description="the paper's exact setup: DUTS-TR for training, PASCAL-S + black/white/noise for testing",
        image_size=224,
        train_set=ImageSetSpec("DUTS-TR", "folder", n=None, dataset="DUTS-TR"),
        test_sets=(ImageSetSpec("PASCAL-S", "folder", n=None, dataset="PASCAL-S"),) + SYNTHETIC_TESTS,
        # As the authors' released code, where the paper's numbers came from: [0, 1] images into the
        # ImageNet encoders and ResNet152 tapped at layer1..4. The weights' own convention and the
        # five-stage ResNet are options: EncoderSpec(..., input="auto", taps=RESNET152_FIVE_STAGES).
        encoders=(
            EncoderSpec("posenet", "none"),
            EncoderSpec("vgg16", "imagenet", input="unit"),
            EncoderSpec("resnet152", "imagenet", taps=RESNET152_AUTHORS_TAPS, input="unit"),
        ),
        feature_scaling="none",
        feature_storage="auto",  # 24 GB (VGG16) and 64 GB (ResNet152) of DUTS-TR features: stored only where they fit
        seeds=3,
        curve_train_n=1000,
        width_sweep=(None,),  # Table 2a's own C -> C readouts: the paper's
        # Beyond the paper: every padding mode and canvas of VGG16 and ResNet152 is a new feature extraction; on all
        # of DUTS-TR that would be ~850 GB of features (the run's plan prints it), on these subsets ~45 GB.
        ablation_train_n=500,
        ablation_test_n=100,
        since_in_main=False,  # notebook 07 on DUTS-TR: `make since PROFILE=paper` first, else notebook 07 computes it
        atlas_in_main=False,  # notebook 08 on DUTS-TR: `make atlas PROFILE=paper` (on a cluster: --executor slurm)
    )


def get_profile(name: str, **overrides) -> Profile:
    """The named profile, with optional field overrides (see :meth:`Profile.with_overrides`)."""
    makers = {"quick": _quick, "offline": _offline, "paper": _paper}
    if name not in makers:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    prof = makers[name]()
    return prof.with_overrides(**overrides) if overrides else prof


def deviations(profile: Profile, notebook: str | None = None) -> list[str]:
    """What this profile does differently from the paper, and why (shown beside every table); ``notebook``
    ("01" .. "08"): only those that touch that notebook's tables and figures."""
    out: list[str] = []

    def add(notebooks: str, text: str) -> None:
        if notebook is None or notebook in notebooks.split():
            out.append(text)

    if profile.train_set.kind != "folder":
        add("01 02 03 04 07", f"training images: {profile.train_set.n} generated dead-leaves images instead of "
                           f"DUTS-TR (10,553 photos), which cannot be downloaded here")
    if any(t.kind == "photo_crops" for t in profile.test_sets):
        n = next(t.n for t in profile.test_sets if t.kind == "photo_crops")
        add("01 02 03 04 05 07", f"natural test images: {n} crops of ~19 photographs shipped in scikit-image, scikit-learn "
                              f"and matplotlib ('photos') instead of PASCAL-S (850 images)")
    labels = {e.weights for e in profile.encoders}
    if "hed" in labels:
        add("02 03 04 05 07", "VGG16 (HED): ImageNet-initialized VGG16 fine-tuned for edge detection (HED) stands in for "
                           "ImageNet VGG16, whose weights cannot be downloaded here")
    if any(e.name == "efficientnet_lite0" for e in profile.encoders):
        add("02 04", "EfficientNet-Lite0 (ImageNet) stands in for ImageNet ResNet152 and is compared with the "
                     "paper's ResNet152 row")
    if "random" in labels:
        add("02 03 04", "random-init VGG16 / ResNet152 (seeded, frozen) are probed as well: position from "
                        "architecture and padding alone; the paper has no such rows, they are compared with its "
                        "ImageNet rows")
    imagenet = [e for e in profile.encoders if e.torchvision_imagenet_arch]
    if any(e.input in ("auto", "imagenet") for e in imagenet):
        add("02 03 04", "ImageNet-weight torchvision encoders get ImageNet mean/std input normalization (the "
                        "weights' own convention); the authors' code fed [0, 1] images")
    if any(e.input == "unit" for e in imagenet):
        add("02 03 04", "choice: ImageNet encoders are fed images in [0, 1] without mean/std normalization, as the "
                        "authors' released code (the weights were trained on normalized images)")
    if profile.feature_scaling == "tap":
        add("02 03 04 05 07", "each feature channel is centred and every channel of a tap divided by the tap's pooled "
                           "standard deviation (training images) before the PEM; the authors' code feeds raw features, "
                           "which makes SGD diverge on random-init ResNet152 (activations ~1e8), and scaling each "
                           "channel on its own lifted channels that barely vary on the training images until the "
                           "readout saturated on test images (how the verdicts changed: see the README)")
    elif profile.feature_scaling == "channel":
        add("02 03 04 05", "each feature channel is standardized (training-set mean/std) before the PEM; the authors' "
                           "code feeds raw features")
    if profile.image_size != 224:
        add("01 02 03 04 05 07", f"images are {profile.image_size}x{profile.image_size} (paper: 224x224)")
    if profile.table4_image_size and profile.table4_image_size != profile.image_size:
        add("03", f"Table 4 runs at {profile.table4_image_size}x{profile.table4_image_size} (VGG16 without padding "
                  f"needs at least 196 px)")
    if profile.table4_train_n:
        add("03", f"Table 4 trains its readouts on the first {profile.table4_train_n} training images (each VGG16 "
                  f"without padding is a new feature extraction; the full set would not fit the time budget)")
    if profile.capacity_train_n:
        add("04", f"Tables 2 and 3 train their readouts on the first {profile.capacity_train_n} training images")
    if profile.readout_width:
        widths = [w for w in profile.width_sweep if w]
        sweep = (f"; claim 5's depth part is decided at the widest of a width sweep ({', '.join(map(str, widths))} "
                 f"channels per pattern, {'in notebook 04' if profile.extended_in_main else '`make extended`'})"
                 if widths else "")
        add("04", f"Table 2a: stacked readout layers are {profile.readout_width} channels wide per pattern (paper: "
                  f"C -> C, e.g. 1472 -> 1472 for VGG16, ~1e15 operations per row: out of reach on 2 CPU cores){sweep}")
    if profile.ablation_train_n or profile.ablation_test_n:
        train, test = profile.ablation_train_n or "all the", profile.ablation_test_n or "all the"
        add("03", f"beyond the paper, the padding-mode and canvas experiments use the first {train} training images "
                  f"and {test} test images of each set, with the encoder's readout seeds (each mode is a new set of "
                  f"encoder features; the full sets would not fit the time budget)")
    if profile.since_models:
        add("07", "beyond the paper, notebook 07: the row/column classifier is a linear discriminant with a shared "
                  "diagonal covariance, in closed form (the studies that use the measure train logistic-regression "
                  "probes); the interventions and the input-size sweep use the padding-mode experiments' image sets")
    if any(s.weights == "random" and s.name.startswith("timm:") for s in profile.since_models):
        add("07", "notebook 07's transformers, ConvNeXt and EVA-02 are random-init (seeded, frozen): no pretrained "
                  "transformer can be had offline; timm's weights are used where a user has them")
    add("08", "beyond the paper, notebook 08 (the atlas): its networks are random-init (seeded, frozen) unless their "
              "weights are named (the pretrained networks the machine has); a network that cannot be made for the "
              "profile's image size is fed its images resized to its own size, and says so on its card")
    if profile.atlas_train_n:
        add("08", f"the atlas's cards are lighter than `make probe`'s: readouts trained on the first "
                  f"{profile.atlas_train_n} of the {profile.train_set.n} training images, to fit its networks in an "
                  f"hour on 2 cores")
    if profile.train_set.n:
        per_epoch = -(-profile.train_set.n // profile.readout.batch_size)
        t4 = profile.table4_train_n or profile.train_set.n
        add("02 03 04", f"training budget: a Table 1-3 readout takes {profile.readout.epochs * per_epoch} SGD steps on "
                        f"{profile.train_set.n} images (Table 4: {profile.readout.epochs * -(-t4 // profile.readout.batch_size)} "
                        f"on {t4}), the paper's 4,950 on 10,553; every claim from trained readouts is decided again with "
                        f"{profile.budget_factor:g}x the epochs (the verdict is 'not decided (training budget)' where that "
                        f"changes it), and notebook 04 draws SPC against SGD steps")
    if profile.readout.epochs != 15 or profile.readout.batch_size != 32:
        add("02 03 04 05", f"{profile.readout.epochs} epochs, batch {profile.readout.batch_size} (paper: 15 epochs, batch 32)")
    resnets = [e for e in profile.encoders if e.name == "resnet152"]
    if any(e.taps in (None, RESNET152_FIVE_STAGES) for e in resnets):
        add("02 03 04", "ResNet152 is tapped at five stages (stem + layer1..4, as the paper's text says; the authors' "
                        "code taps layer1..4)")
    if any(e.taps == RESNET152_AUTHORS_TAPS for e in resnets):
        add("02 03 04", "choice: ResNet152 is tapped at layer1..4 (3840 channels) as the authors' released code; the "
                        "paper's text says five blocks")
    for text in downstream_deviations(profile.downstream):
        add("05", text)
    add("02 03 04", "target maps are in [0, 1]; the paper's HS/VS MAE (~0.70) is impossible for such maps "
                    "(a constant prediction gives ~0.32), so our stripe MAEs are not comparable")
    return out


def downstream_deviations(ds: DownstreamSpec) -> list[str]:
    """Notebook 05's differences from the paper (Tables 5 and 6); "choice:" where the paper is silent."""
    out = []
    if ds.sod_train.kind != "sod_folder":
        out.append(f"Table 5/6: the networks learn on {ds.sod_train.n} generated scenes per task instead of MSRA-B and "
                   f"PASCAL VOC 2012 (not downloadable here): centre-biased salient objects (tested on centre-biased "
                   f"scenes and on scenes with the object placed anywhere) and sky/ground/object layouts; "
                   f"{ds.sod_tests[0].n} test scenes each")
    if ds.width != 64 or ds.blocks != 5:
        blocks = "" if ds.blocks == 5 else f", its first {ds.blocks} blocks ({sum((2, 2, 3, 3, 3)[:ds.blocks])} convolutions)"
        out.append(f"Table 5/6: the trained network is VGG16-BN at 1/{64 // ds.width} of VGG16's width "
                   f"({ds.width} channels in the first block){blocks} and sees {ds.image_size} px images: trained "
                   f"without padding it sees the scene around each image as deep as its deepest block reaches, which 2 "
                   f"CPU cores afford only this small")
    if ds.seeds > 1:
        out.append(f"beyond the paper (one network each): {ds.seeds} networks per task and padding, trained from "
                   f"{ds.seeds} seeds; claim 9 is decided over all of them, Tables 5 and 6 and Fig 1 show the first")
    real = ds.sod_train.kind == "sod_folder"
    around = ("each photo is resized with room for the scene around its central crop, which is the image"
              if real else "the scenes are generated with the scene going on around the image")
    out.append(f"choice (the paper does not describe the heads or schedules): VGG16 with BatchNorm, a side-output "
               f"decoder (a 1x1 side output per block, fused by a 1x1 convolution), Adam (lr {ds.lr:g}), {ds.epochs} "
               f"epochs, batch {ds.batch_size}; without padding the network's valid convolutions see the image and the "
               f"scene around it, so its output covers the image with no invented border ({around}); with padding it "
               f"sees the image alone")
    return out


def command_profile(prog: str, description: str, argv: list[str] | None = None) -> tuple[Profile, Path]:
    """The profile and output folder of a command that writes results beside the study's (``make extended``,
    ``make since``): ``--profile`` (default offline) and ``--output-dir`` (default figures/<profile>)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--profile", default="offline", help="quick | offline | paper (default offline)")
    parser.add_argument("--output-dir", default="", help="where the study's results are (default figures/<profile>)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    return profile, paths.output_dir(profile.name, args.output_dir or None)
