"""The paper's experiments as functions of a :class:`~posenc_utils.models.profiles.Profile`.

Each experiment is a function returning tidy DataFrames (one row per measured cell), a table
experiment a :class:`Result` (the table, the per-image metrics behind it, what it was measured
from); the expensive steps underneath (image sets, encoder features, trained readouts) are cached, so
an experiment that reuses another's features costs only its readouts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..engine.fast_readout import upsample
from ..engine.features import FeatureSet, extract_features
from ..engine.images import ImageSet, build_image_set, photo_sources
from ..engine.plots import fig4_qualitative
from ..primitives.products import Product, declare
from ..engine.tables import write_csv, write_frame, write_table
from ..engine.measures import (baseline_summary, feature_columns, feature_table, probe_measures, seed_summary, summarize,
                       table_columns)
from ..models.profiles import EncoderSpec, Profile, ReadoutSpec
from ..engine.readout import Readout, ReadoutJob, evaluate, train_readouts
from ..primitives.targets import PATTERNS


@dataclass
class ProbeResult:
    """One encoder probed by one readout: per-image metrics, low-resolution predictions, and the
    features it was trained and tested on (for the measures that read features, not predictions)."""

    encoder: EncoderSpec
    readout: Readout
    # test_set, image, pattern, one column per probe measure (spc, mae), the head's final training loss and whether
    # it failed to train (train_loss, readout_failed)
    per_image: pd.DataFrame
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # test set -> (N, P, h, w)
    seed: int = 0  # the readout's seed
    train_features: FeatureSet | None = None
    test_features: dict[str, FeatureSet] = field(default_factory=dict)  # test set -> its features
    image_size: int = 0  # the size the targets and metrics are at (the constant baseline's)

    def upsampled(self, test_set: str, pattern: str, size: int, images=slice(None)) -> np.ndarray:
        """The ``pattern`` head's predictions on ``test_set`` (images ``images``), upsampled to ``size``
        as the metrics see them: (N, size, size)."""
        h = self.readout.patterns.index(pattern)
        low = torch.from_numpy(self.predictions[test_set][images, h:h + 1].astype(np.float32))
        return upsample(low, size)[:, 0].numpy()

    def summary(self) -> pd.DataFrame:
        """One row per test set and pattern: the probe measures and the readout's baseline."""
        by = ["test_set", "pattern"]
        df = summarize(self.per_image, by).merge(baseline_summary(self.per_image, by, self.image_size), on=by)
        return df.assign(encoder=self.encoder.label, arch=self.encoder.name, weights=self.encoder.weights,
                         padding=self.encoder.padding)

    def feature_measures(self, sources: dict | None = None, table: str | None = None) -> pd.DataFrame:
        """Every feature measure on each test set and on the training set, over the channels the readout
        reads (:func:`measures.feature_table`; ``sources``: test set -> source photograph of each image; ``table``: those
        given beside it);
        NaN for a result made without its features."""
        if self.train_features is None:
            return pd.DataFrame({"test_set": self.per_image.test_set.unique()}).reindex(
                columns=["test_set", *feature_columns(table)])
        return feature_table(self.train_features, self.test_features, self.readout.channel_index, sources, table)


def with_feature_measures(summary: pd.DataFrame, result: ProbeResult, sources: dict | None = None,
                          table: str | None = None) -> pd.DataFrame:
    """``summary`` (one row per test set and pattern) with the feature measures of ``result`` (those of ``table``)
    beside each row."""
    return summary.merge(result.feature_measures(sources, table), on="test_set", how="left")


@dataclass(frozen=True, eq=False)
class Result:
    """What every experiment returns: its tidy ``table`` (one row per measured cell), the ``per_image`` results it
    summarizes (every seed's; what the claims are decided on), the ``runs`` it was measured from, keyed by row label
    (the first seed's :class:`ProbeResult` of each row, for the figures; Table 5: each network's predictions by
    (task, padding, test set)), any further tables it makes, by name (``more``; Table 2b beside Table 2a), and, where
    the experiment records it, what training the readouts it rests on took (``seconds``, as their cache entries booked
    it: the same whether this run trained them or read them back)."""

    table: pd.DataFrame
    per_image: pd.DataFrame | None = None
    runs: dict[Any, Any] = field(default_factory=dict)
    more: dict[str, pd.DataFrame] = field(default_factory=dict)
    seconds: float = 0.0

    def save(self, out: Path, product: Product, caption: str = "", budget: bool = False) -> Path:
        """Write this result as ``product`` (its larger-budget twin with ``budget``): a table with its caption and
        per-image results, a CSV, or the per-image results alone (:data:`posenc_utils.primitives.products.KINDS`)."""
        if product.kind == "frame" or (budget and product.budget == "frame"):
            return write_frame(self.per_image, out, product, budget)
        target = product.twin if budget else product
        if product.kind == "csv":
            return write_csv(self.table, target.csv(out))
        return write_table(self.table, out, target, caption, per_image=self.per_image if product.per_image else None)


def image_sets(profile: Profile) -> tuple[ImageSet, list[ImageSet]]:
    """The training set and the test sets of ``profile``, materialized (cached)."""
    train = build_image_set(profile.train_set, profile.image_size)
    tests = [build_image_set(s, profile.image_size) for s in profile.test_sets]
    return train, tests


def features_for(profile: Profile, spec: EncoderSpec, image_set: ImageSet) -> FeatureSet:
    """Cached features of one encoder on one image set, with the profile's settings."""
    return extract_features(spec, image_set, profile.readout.feature_size, profile.seed,
                            profile.extract_batch_size, profile.feature_dtype, storage=profile.feature_storage)


FeatureSource = Callable[[Profile, EncoderSpec, ImageSet], FeatureSet]
Views = dict[tuple[str, str], tuple[ImageSet, int]]  # (image set key, padding) -> (larger set, first n)


def view_features(views: Views) -> FeatureSource:
    """A feature source that views the cached features of a larger set for its first images (e.g.
    Table 1's full training set for a head of it) instead of computing them again."""
    def features(profile: Profile, spec: EncoderSpec, image_set: ImageSet) -> FeatureSet:
        if spec.position == "kept" and (image_set.key, spec.padding) in views:  # the view is of the network as built
            larger, n = views[(image_set.key, spec.padding)]
            return features_for(profile, spec, larger).head(n)
        return features_for(profile, spec, image_set)

    return features


def head_of(full: ImageSet, n: int | None) -> tuple[ImageSet, Views]:
    """The first ``n`` images of ``full`` (all of them when ``n`` is None), and the view that lets
    them use ``full``'s cached zero-padded features (Table 1's) instead of computing their own."""
    head = full.head(n) if n else full
    return head, ({(head.key, "zeros"): (full, head.n)} if head.key != full.key else {})


def probe_job(profile: Profile, spec: EncoderSpec, patterns: tuple[str, ...] = PATTERNS,
              readout: ReadoutSpec | None = None, taps: tuple[str, ...] | None = None,
              sets: tuple[ImageSet, list[ImageSet]] | None = None, features: FeatureSource | None = None,
              seed: int | None = None) -> ReadoutJob:
    """The readout :func:`probe` trains with the same arguments (its training features are had, or extracted, now)."""
    train = (sets or image_sets(profile))[0]
    seed = profile.seed if seed is None else seed
    return ReadoutJob((features or features_for)(profile, spec, train), tuple(patterns), readout or profile.readout,
                      profile.image_size, seed, taps, profile.feature_scaling)


Probe = tuple[Profile, dict]  # a probe to make: the profile and the keyword arguments of probe() / probe_job()


def train_probes(probes: list[Probe]) -> None:
    """Train the readouts of many probes at once, so the probes find them cached: the readouts of one feature
    set, seed and batch size share their passes over the features, and narrow ones train side by side
    (:func:`readout.train_readouts`). An experiment that knows its probes calls it first."""
    train_readouts([probe_job(p, **kw) for p, kw in probes])


def probe(profile: Profile, spec: EncoderSpec, patterns: tuple[str, ...] = PATTERNS,
          readout: ReadoutSpec | None = None, taps: tuple[str, ...] | None = None,
          sets: tuple[ImageSet, list[ImageSet]] | None = None, features: FeatureSource | None = None,
          seed: int | None = None) -> ProbeResult:
    """Train a readout on the profile's training set and evaluate it on every test set.

    ``sets`` replaces the profile's (train, tests) image sets and ``features`` how their features
    are had (default: :func:`features_for`), e.g. a view of a larger set's cached features.
    ``seed`` is the readout's (default: the profile's); the encoder keeps the profile's seed.
    """
    sets = sets or image_sets(profile)
    job = probe_job(profile, spec, patterns, readout, taps, sets, features, seed)
    trained = train_readouts([job])[0]
    tests, features, train_features = sets[1], features or features_for, job.features
    frames, preds, test_features = [], {}, {}
    losses, failed = trained.final_losses(), trained.failed_heads(profile.image_size)
    for test in tests:
        test_features[test.name] = features(profile, spec, test)
        per_image, lowres = evaluate(trained, test_features[test.name], profile.image_size)
        frames.append(per_image.assign(test_set=test.name, train_loss=per_image.pattern.map(losses),
                                       readout_failed=per_image.pattern.map(failed)))
        preds[test.name] = lowres
    return ProbeResult(spec, trained, pd.concat(frames, ignore_index=True), preds, job.seed, train_features,
                       test_features, profile.image_size)


def probe_seeds(profile: Profile, spec: EncoderSpec, **kwargs) -> list[ProbeResult]:
    """:func:`probe` once per readout seed of ``spec``'s rows (:meth:`Profile.seeds_for`; each cached on its own)."""
    return [probe(profile, spec, seed=s, **kwargs) for s in profile.seeds_for(spec)]


def photo_source_ids(profile: Profile, photos: ImageSet) -> np.ndarray | None:
    """The source photograph of each test photo where the profile's photos are crops (else None)."""
    spec = next((t for t in profile.test_sets if t.name == photos.name), None)
    if spec is None or spec.kind != "photo_crops":
        return None
    return photo_sources(photos.n, spec.seed)


def per_image_frame(results: list[ProbeResult], sources: dict | None = None) -> pd.DataFrame:
    """The per-image metrics of ``results`` (one encoder and readout setting, any seeds), tidy: encoder,
    arch, weights, padding, seed, test set, image, its source photograph (``sources``: test set -> source
    id per image; the image itself where there is none), pattern, and every probe measure (SPC, MAE)."""
    e = results[0].encoder
    df = pd.concat([r.per_image.assign(seed=r.seed) for r in results], ignore_index=True)
    source = df.image.to_numpy().copy()
    for name, ids in (sources or {}).items():
        at = (df.test_set == name).to_numpy()
        source[at] = np.asarray(ids)[df.image.to_numpy()[at]]
    df = df.assign(encoder=e.label, arch=e.name, weights=e.weights, padding=e.padding, source=source)
    return df[["encoder", "arch", "weights", "padding", "seed", "test_set", "image", "source", "pattern",
               *(m.name for m in probe_measures()), "train_loss", "readout_failed"]]


def seeded_summary(results: list[ProbeResult], sources: dict | None = None) -> pd.DataFrame:
    """One row per test set and pattern over the seeds of ``results`` (the same encoder and readout
    setting): means, intervals over seeds and over test images (:func:`measures.seed_summary`)."""
    by, per_image = ["test_set", "pattern"], per_image_frame(results)
    df = seed_summary(per_image, by, sources).merge(baseline_summary(per_image, by, results[0].image_size), on=by)
    e = results[0].encoder
    return df.assign(encoder=e.label, arch=e.name, weights=e.weights, padding=e.padding)


def test_sources(profile: Profile, tests: list[ImageSet]) -> dict[str, np.ndarray]:
    """Source photograph ids of each test set made of photo crops (for bootstrap intervals)."""
    return {t.name: ids for t in tests if (ids := photo_source_ids(profile, t)) is not None}


def parse_encoders(texts: list[str] | tuple[str, ...]) -> tuple[EncoderSpec, ...]:
    """Encoder specs from notebook-parameter strings such as ``"tv:resnet50:random"``."""
    return tuple(EncoderSpec.parse(t) for t in texts)


def table1_probes(profile: Profile, extra_encoders: tuple[EncoderSpec, ...] = ()) -> list[Probe]:
    """The probes of :func:`table1`: every encoder with each of its readout seeds."""
    return [(profile, dict(spec=spec, seed=s)) for spec in profile.encoders + tuple(extra_encoders)
            for s in profile.seeds_for(spec)]


def table1(profile: Profile, extra_encoders: tuple[EncoderSpec, ...] = (), also: tuple[Profile, ...] = ()) -> Result:
    """Table 1: every encoder x pattern x test set, with SPC, MAE, undefined-SPC count and n images,
    averaged over the profile's readout seeds with intervals over seeds and over test images, and the
    feature measures (:mod:`posenc_utils.engine.measures`) on the test set and the training images.

    ``also``: profiles whose Table 1 will be asked for next (the budget check), whose readouts are trained
    now with this table's, sharing their passes over the features (a readout of the same seed on the same
    features: the first epochs of a longer training see the same batches).

    Returns the tidy table, every seed's per-image metrics and the first seed's probe results (for the
    qualitative figure), keyed by label.
    """
    results, frames, per_image = {}, [], []
    train, tests = image_sets(profile)
    sources = test_sources(profile, tests)
    for spec in profile.encoders + tuple(extra_encoders):  # each encoder's features in a row: built once
        for image_set in (train, *tests):
            features_for(profile, spec, image_set)
    train_probes(table1_probes(profile, extra_encoders) + [p for other in also for p in table1_probes(other)])
    for spec in profile.encoders + tuple(extra_encoders):
        runs = probe_seeds(profile, spec)
        results[spec.label] = runs[0]
        frames.append(with_feature_measures(seeded_summary(runs, sources), runs[0], sources, "table1"))
        per_image.append(per_image_frame(runs, sources))
    table = pd.concat(frames, ignore_index=True)
    cols = table_columns(["encoder", "arch", "weights", "padding", "pattern", "test_set"], paper=False, table="table1")
    return Result(table[cols], pd.concat(per_image, ignore_index=True), results)


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

TABLE1 = declare("table1_position_info", "02", "table", role="Table 1", made_by=table1, claims=(1, 2, 3, 4),
                 frame="table1", per_image=True, budget="table", readme="headline")
FIG4 = declare("fig4_qualitative", "02", "figure", role="Fig 4", made_by=fig4_qualitative, grid=True)
CLAIMS_1_4 = declare("claims_1_4", "02", "markdown", claims=(1, 2, 3, 4), readme="headline")
