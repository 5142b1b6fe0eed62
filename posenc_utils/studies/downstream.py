"""Notebook 05: downstream tasks where position may matter (PAPER.md section 4: Fig 1, Tables 5 and 6).

* **Data.** Offline there is no salient-object or segmentation dataset, so scenes are generated
  (:mod:`posenc_utils.primitives.scenes`: a centre-biased object on a textured background; a sky/ground/object
  layout). The paper profile reads MSRA-B, ECSSD, PASCAL-S, DUT-OMRON and PASCAL VOC 2012 from
  ``data/raw`` (their folders declared in :mod:`posenc_utils.primitives.datasets`).
* **The network** (:mod:`posenc_utils.models.scenenet`): VGG16's layout with BatchNorm (``vgg16_bn``) at a
  chosen width (and its first ``blocks`` blocks) and an HED-style decoder, trained from scratch with zero padding
  or with every padding removed. Every image is made with the scene around it (:attr:`TaskData.margin` pixels on
  each side: the generated scene goes on; a dataset's photo is resized and its centre is the image): with padding
  the network sees the image and pads it with zeros, without padding it sees the image and the scene around it and
  its valid convolutions give an output for exactly the image. Neither sees a value that is not in the scene: the
  two arms differ in what lies beyond the image, zeros or the scene itself.
* **Training** (:func:`train_task_model`): seeded, cached by everything that decides the weights,
  written atomically; the trained encoders are probe encoders (``vgg16bn_w<width>`` with weights
  ``sod:<key>`` / ``seg:<key>``) for Table 6.
* **Metrics** (:mod:`posenc_utils.primitives.task_metrics`) follow the SOD and segmentation literature: the
  adaptive F-measure, its maximum over thresholds, the mean absolute error, and the mean IoU.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from ..primitives import cache, devices, paths, timing
from ..engine import tables
from .experiments import Probe, Result, image_sets, per_image_frame, probe, seeded_summary, test_sources, train_probes
from ..primitives.datasets import sod_pairs, voc_pairs
from ..engine.images import read_rgb, resize
from ..engine.measures import table_columns
from ..primitives.metrics import cluster_bootstrap_ci, t_interval
from ..engine.plots import off_axes, save_figure
from ..primitives.products import declare
from ..models.profiles import DownstreamSpec, EncoderSpec, ImageSetSpec, Profile
from ..primitives.progress import progress
from ..models.scenenet import PADDINGS, TASKS, SceneNet, checkpoint_paths, frame_inputs, load_checkpoint
from ..primitives.scenes import SCENE_VERSION, SEG_CLASSES, seg_scene, sod_scene
from ..primitives.task_metrics import confusion, f_measure, iou_from_confusion, max_f_measure, mean_absolute_error

# bump when the network or its training changes (invalidates cached checkpoints); 2: one thread; 3: without padding
# the network sees the scene around the image (was: the image mirrored), and may keep its first blocks only
MODEL_VERSION = 3
IGNORE = 255  # label of pixels no metric or loss counts (PASCAL VOC's "void")

# ---------------------------------------------------------------- data: generated scenes and the paper's folders


@dataclass(frozen=True)
class TaskData:
    """Images with the scene around them and their labels for one task: (N, S + 2m, S + 2m, 3) uint8 and
    (N, S, S) uint8 (m: ``margin``; the image is the central S x S, :func:`scenenet.frame_inputs`).

    SOD labels are binary masks; segmentation labels are class indices (``IGNORE``: not counted)."""

    name: str
    task: str  # sod | seg
    key: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    margin: int = 0

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """The side of the image (its labels' side)."""
        return self.labels.shape[1]

    def frames(self) -> np.ndarray:
        """The images alone, without the scene around them (N, S, S, 3)."""
        return frame_inputs(self.images, self.margin, "zeros")


VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def missing_datasets(ds: DownstreamSpec) -> list[str]:
    """The messages of every dataset folder notebook 05 needs and cannot find (none for generated scenes)."""
    out = []
    for spec in (ds.sod_train, *ds.sod_tests, ds.seg_train, ds.seg_test):
        try:
            _pairs(spec)
        except FileNotFoundError as err:
            out.append(str(err))
    return out


def task_image_count(spec: ImageSetSpec) -> int:
    """How many images a downstream set holds (a folder's from its listing; nothing is read)."""
    pairs = _pairs(spec)
    return (len(pairs) if spec.n is None else min(spec.n, len(pairs))) if pairs is not None else (spec.n or 0)


def _pairs(spec: ImageSetSpec) -> list[tuple[Path, Path]] | None:
    if spec.kind == "sod_folder":
        return sod_pairs(spec.dataset)
    if spec.kind == "voc":
        return voc_pairs(spec.dataset.split(":", 1)[1])
    return None


def _centre(a: np.ndarray, margin: int) -> np.ndarray:
    """The central part of an image made with ``margin`` pixels around it."""
    return a[margin:a.shape[0] - margin, margin:a.shape[1] - margin] if margin else a


def _read_mask(path: Path, size: int, task: str) -> np.ndarray:
    """A label image resized (nearest) to size x size: SOD masks binarized at 128, VOC class indices kept."""
    with Image.open(path) as im:
        if task == "seg":
            if im.mode != "P" and im.mode != "L":
                raise ValueError(f"{path}: a VOC label image holds class indices (palette or grey PNG), not {im.mode}")
            return np.asarray(im.resize((size, size), Image.NEAREST)).astype(np.uint8)
        grey = np.asarray(im.convert("L").resize((size, size), Image.NEAREST))
    return (grey >= 128).astype(np.uint8)


GENERATED = {  # (task, scene(rng, size, margin))
    "sod_scenes": ("sod", lambda rng, size, m: sod_scene(rng, size, margin=m)),
    "sod_scenes_anywhere": ("sod", lambda rng, size, m: sod_scene(rng, size, centre_sd=None, margin=m)),
    "seg_scenes": ("seg", lambda rng, size, m: seg_scene(rng, size, margin=m)),
}


def task_data(spec: ImageSetSpec, size: int, margin: int = 0) -> TaskData:
    """The images (with ``margin`` pixels of their scene around them) and labels of one set: generated (seeded, in
    memory: ~2 ms a scene) or read from a paper dataset's folder and cached (each photo and its label resized to
    ``size + 2 * margin``, the image its central ``size``; the cache is keyed by the file list)."""
    if spec.kind in GENERATED:
        task, make = GENERATED[spec.kind]
        rng = np.random.default_rng(spec.seed)
        images, labels = zip(*(make(rng, size, margin) for _ in range(spec.n)))
        key = cache.make_key({"v": SCENE_VERSION, "set": cache.key_fields(spec), "size": size,
                              **({"margin": margin} if margin else {})})
        classes = ("object",) if task == "sod" else SEG_CLASSES
        return TaskData(spec.name, task, key, np.stack(images), np.stack([_centre(y, margin) for y in labels]),
                        classes, margin)
    pairs = _pairs(spec)
    if pairs is None:
        raise ValueError(f"{spec.name}: unknown kind {spec.kind!r} for a task set; use one of "
                         f"{', '.join(GENERATED)}, sod_folder or voc")
    pairs = pairs[: spec.n or None]
    task = "sod" if spec.kind == "sod_folder" else "seg"
    key = cache.make_key({"v": SCENE_VERSION, "set": cache.key_fields(spec), "size": size,
                          "files": [f"{a.name}:{a.stat().st_size}:{b.name}:{b.stat().st_size}" for a, b in pairs],
                          **({"margin": margin} if margin else {})})
    folder = paths.cache_dir() / "downstream"
    data_path, meta_path = folder / f"data-{key}.npz", folder / f"data-{key}.json"
    def read_folders() -> bool:  # holding the entry's lock
        side = size + 2 * margin
        images = np.empty((len(pairs), side, side, 3), np.uint8)
        labels = np.empty((len(pairs), size, size), np.uint8)
        for i, (a, b) in enumerate(progress(pairs, f"reading {spec.name}", unit="images")):
            images[i], labels[i] = resize(read_rgb(a), side), _centre(_read_mask(b, side, task), margin)
        cache.ensure_free_space(folder, images.nbytes + labels.nbytes, f"the {spec.name} images")

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, images=images, labels=labels)

        cache.write_file_entry(data_path, meta_path, {"key": key, "name": spec.name, "n": len(pairs)}, write)
        return True

    cache.computed_once(data_path, lambda: cache.read_file_entry(data_path, meta_path, key), read_folders)
    with np.load(data_path) as z:
        images, labels = z["images"], z["labels"]
    return TaskData(spec.name, task, key, images, labels, ("object",) if task == "sod" else VOC_CLASSES, margin)


# ---------------------------------------------------------------- training, cached


@dataclass
class TrainedModel:
    """A trained network and how it came to be."""

    task: str
    padding: str
    key: str
    net: SceneNet
    losses: list[float]  # mean training loss of each epoch
    seconds: float
    fresh: bool = False  # trained by this call (not read from the cache)

    @property
    def label(self) -> str:
        return "zero padding" if self.padding == "zeros" else "no padding"

    def encoder_spec(self) -> EncoderSpec:
        """This network's encoder as a probe encoder (Table 6): its weights are found by their key."""
        blocks = "" if self.net.blocks == 5 else f"_b{self.net.blocks}"
        return EncoderSpec(f"vgg16bn_w{self.net.width}{blocks}", f"{self.task}:{self.key}")


def model_key(task: str, padding: str, train: TaskData, ds: DownstreamSpec, seed: int) -> str:
    """Everything that decides the trained weights."""
    settings = {k: getattr(ds, k) for k in ("width", "image_size", "epochs", "batch_size", "lr", "blocks")}
    return cache.make_key({"v": MODEL_VERSION, "task": task, "padding": padding, "data": train.key,
                           "classes": len(train.classes), "settings": settings, "seed": seed})


def device() -> torch.device:
    """Where networks train: :func:`posenc_utils.primitives.devices.device` (the GPU when there is one)."""
    return torch.device(devices.device())


def _images(images: np.ndarray, dev: torch.device) -> torch.Tensor:
    """uint8 images (B, H, W, 3) as the network's input: float (B, 3, H, W) in [0, 1] on ``dev``."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(dev).permute(0, 3, 1, 2).float() / 255


def _batch(data: TaskData, idx: np.ndarray, padding: str, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch as a network of ``padding`` sees it (:func:`scenenet.frame_inputs`) and its labels."""
    return (_images(frame_inputs(data.images[idx], data.margin, padding), dev),
            torch.from_numpy(np.ascontiguousarray(data.labels[idx])).to(dev))


def task_loss(logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """Binary cross-entropy for SOD masks, cross-entropy (``IGNORE`` pixels left out) for segmentation."""
    if task == "sod":
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE)


def train_task_model(train: TaskData, padding: str, ds: DownstreamSpec, seed: int) -> TrainedModel:
    """Train :class:`SceneNet` from scratch on ``train`` (Adam, ``ds.epochs`` epochs, seeded order),
    or load it from the cache; the checkpoint is written atomically with its loss curve.

    On a CPU it trains on one thread, alone or beside another network (:func:`train_all`): its operations are
    too small to gain from a second thread, and two threads stall whenever another process holds a core
    (:func:`posenc_utils.primitives.devices.side_by_side`). So its weights are the same bits however it is run, on a machine
    of any number of cores."""
    key = model_key(train.task, padding, train, ds, seed)
    n_out = 1 if train.task == "sod" else len(train.classes)
    net = SceneNet(ds.width, n_out, padding, seed, ds.blocks)
    if padding == "none" and net.margin() != train.margin:
        raise ValueError(f"{train.name} holds {train.margin} px of scene around each image; the network without "
                         f"padding needs {net.margin()} (make the set with task_data(..., margin=scene_margin(ds)))")

    def cached() -> TrainedModel | None:
        found = load_checkpoint(key)
        if found is None:
            return None
        meta, state = found
        net.load_state_dict(state)
        return TrainedModel(train.task, padding, key, net.eval(), meta["losses"], meta["seconds"])

    return cache.computed_once(checkpoint_paths(key)[0], cached, lambda: _train(net, train, padding, ds, seed, key))


def _train(net: "SceneNet", train: TaskData, padding: str, ds: DownstreamSpec, seed: int, key: str) -> TrainedModel:
    """Train ``net`` and write its checkpoint (holding the entry's lock)."""
    dev = device()
    with devices.threads(1) if dev.type == "cpu" else contextlib.nullcontext():
        losses, seconds = _fit(net, train, ds, seed, dev)
    net.cpu().eval()
    data_path, meta_path = checkpoint_paths(key)
    meta = {"key": key, "task": train.task, "padding": padding, "width": ds.width, "blocks": ds.blocks,
            "n_out": net.n_out, "seed": seed,
            "train_set": train.name, "n_train": train.n, "losses": losses, "seconds": round(seconds, 2)}
    cache.write_file_entry(data_path, meta_path, meta, lambda tmp: torch.save(net.state_dict(), tmp))
    return TrainedModel(train.task, padding, key, net, losses, seconds, fresh=True)


def _fit(net: "SceneNet", train: TaskData, ds: DownstreamSpec, seed: int, dev: torch.device) -> tuple[list[float], float]:
    """Adam on the task's loss: the mean loss of each epoch, and the seconds it took."""
    padding = net.padding
    net.to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=ds.lr)
    order = torch.Generator().manual_seed(seed)
    losses, t0 = [], time.perf_counter()
    desc = f"training {train.task.upper()} network, {'zero padding' if padding == 'zeros' else 'no padding'}"
    for _epoch in progress(range(ds.epochs), desc, total=ds.epochs, unit="epochs"):
        perm, total = torch.randperm(train.n, generator=order).numpy(), 0.0
        for i in range(0, train.n, ds.batch_size):
            x, y = _batch(train, np.sort(perm[i:i + ds.batch_size]), padding, dev)
            loss = task_loss(net(x), y, train.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        losses.append(total / train.n)
    return losses, time.perf_counter() - t0


def predict(net: SceneNet, images: np.ndarray, task: str, batch: int = 32) -> np.ndarray:
    """Saliency in [0, 1] (N, H, W) float32 for SOD; class indices (N, H, W) uint8 for segmentation, of the
    network's inputs ``images`` (:func:`scenenet.frame_inputs`: without padding, with the scene around each image)."""
    dev, out = device(), []
    net = net.to(dev).eval()
    with torch.no_grad(), timing.phase("downstream_prediction"):
        for i in range(0, len(images), batch):
            logits = net(_images(images[i:i + batch], dev))
            out.append((torch.sigmoid(logits[:, 0]) if task == "sod" else logits.argmax(1).to(torch.uint8)).cpu().numpy())
    net.cpu()
    return np.concatenate(out)


PREDICTION_VERSION = 2  # 2: the network without padding sees the scene around the image


def cached_predictions(model: TrainedModel, data: TaskData, crop_left: int = 0) -> np.ndarray:
    """:func:`predict` of a trained network on a task set (its images without their ``crop_left`` leftmost
    columns), cached by the network's and the set's keys: a rerun of notebook 05 predicts nothing again."""
    key = cache.make_key({"model": model.key, "data": data.key, "crop_left": crop_left, "v": PREDICTION_VERSION})
    folder = paths.cache_dir() / "downstream"
    data_path, meta_path = folder / f"pred-{key}.npz", folder / f"pred-{key}.json"

    def cached() -> np.ndarray | None:
        if cache.read_file_entry(data_path, meta_path, key) is None:
            return None
        with np.load(data_path) as z:
            return z["pred"]

    def compute() -> np.ndarray:  # holding the entry's lock
        pred = predict(model.net, frame_inputs(data.images, data.margin, model.padding, crop_left), model.task)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, pred=pred)

        cache.write_file_entry(data_path, meta_path, {"key": key, "model": model.key, "data": data.key}, write)
        return pred

    return cache.computed_once(data_path, cached, compute)


# ---------------------------------------------------------------- Table 5: with and without padding


@dataclass
class Downstream:
    """Notebook 05's trained networks, trained[(task, padding, seed)], and test data, tests[task] (list). Tables 5
    and 6 and Fig 1 show the first seed's networks (:attr:`models`); claim 9 is decided over every seed's."""

    trained: dict[tuple[str, str, int], TrainedModel]
    tests: dict[str, list[TaskData]]
    seed: int = 0  # the first training seed: the one whose networks the tables show

    def seeds(self) -> list[int]:
        """Every training seed, the first one first."""
        return [self.seed] + sorted({s for _t, _p, s in self.trained} - {self.seed})

    def networks(self, seed: int) -> dict[tuple[str, str], TrainedModel]:
        """The networks of one training seed, by (task, padding)."""
        return {(t, p): m for (t, p, s), m in self.trained.items() if s == seed}

    @property
    def models(self) -> dict[tuple[str, str], TrainedModel]:
        """The first seed's networks, by (task, padding)."""
        return self.networks(self.seed)

    def only(self, seed: int) -> "Downstream":
        """The run as if it had trained one seed's networks alone."""
        return Downstream({k: m for k, m in self.trained.items() if k[2] == seed}, self.tests, seed)


Predictions = dict[tuple[str, str, str], np.ndarray]  # (task, padding, test set) -> one network's predictions


def predict_all(run: Downstream) -> Predictions:
    """Every network's predictions on each test set of its task (:func:`cached_predictions`)."""
    return {(task, pad, test.name): cached_predictions(model, test)
            for (task, pad), model in run.models.items() for test in run.tests[task]}


def scene_margin(ds: DownstreamSpec) -> int:
    """The pixels of scene every image of notebook 05 is made with on each side: what its network without padding
    needs (:meth:`SceneNet.margin`)."""
    return SceneNet(ds.width, 1, "none", 0, ds.blocks).margin()


def train_all(profile: Profile) -> Downstream:
    """Both tasks' networks, with and without padding, the same seed and data for each pair, for each of the
    downstream spec's ``seeds`` training seeds."""
    ds = profile.downstream
    missing = missing_datasets(ds)
    if missing:
        raise FileNotFoundError("notebook 05 cannot run in this profile; missing:\n- " + "\n- ".join(missing))
    m = scene_margin(ds)
    trains = {"sod": task_data(ds.sod_train, ds.image_size, m), "seg": task_data(ds.seg_train, ds.image_size, m)}
    tests = {"sod": [task_data(s, ds.image_size, m) for s in ds.sod_tests],
             "seg": [task_data(ds.seg_test, ds.image_size, m)]}
    seeds = range(profile.seed, profile.seed + max(1, ds.seeds))
    order = [(task, pad, seed) for seed in seeds for task in TASKS for pad in PADDINGS]  # the tables' order
    todo = sorted(order, key=lambda tps: tps[1] == "zeros")  # trained the longest first
    jobs = [functools.partial(train_task_model, trains[task], pad, ds, seed) for task, pad, seed in todo]
    t0 = time.perf_counter()
    # one thread each (as alone: the same weights), two at a time on a CPU
    trained = devices.side_by_side(jobs) if device().type == "cpu" else [job() for job in jobs]
    if any(m.fresh for m in trained):
        timing.add("downstream_training", time.perf_counter() - t0)
    found = dict(zip(todo, trained))
    return Downstream({k: found[k] for k in order}, tests, profile.seed)


def _paper_table5() -> pd.DataFrame:
    df = pd.read_csv(paths.PAPER_TABLE5_CSV)
    df["padding"] = df["model"].map({"VGG16 with padding": "zeros", "VGG16 without padding": "none"})
    df["metric"] = df["metric"].replace({"F-measure": "F-measure (adaptive)", "mIoU %": "mIoU"})
    df.loc[df.metric == "mIoU", "value"] /= 100
    return df


def _paper_value(paper: pd.DataFrame, task: str, padding: str, metric: str, test_set: str) -> tuple[float, str]:
    """The paper's value for the same task, padding and metric: on the same test set when the names
    match (paper profile), else the mean of the paper's test sets (generated scenes stand in for them)."""
    rows = paper[(paper.padding == padding) & (paper.metric == metric)
                 & (paper.task == ("salient object detection" if task == "sod" else "semantic segmentation"))]
    if rows.empty:
        return float("nan"), ""
    same = rows[rows.test_set.str.replace("PASCAL VOC 2012 val", "VOC2012 val") == test_set]
    if len(same):
        return float(same.value.iloc[0]), f"{same.test_set.iloc[0]}"
    return float(rows.value.mean()), ("mean of " if len(rows) > 1 else "") + "/".join(rows.test_set)


def _bootstrap(values: np.ndarray, stat, groups=None, seed: int = 0) -> tuple[float, float]:
    return cluster_bootstrap_ci(values, groups, stat=stat, n_boot=1000, seed=seed)


def table5(profile: Profile, run: Downstream) -> Result:
    """Table 5, tidy: one row per task x padding x test set x metric, with a 95% bootstrap interval
    over test images and the paper's value beside ours. SOD: adaptive F-measure and MAE (per image,
    averaged), max F-measure (one threshold for the set); segmentation: mIoU (fraction, not %).

    Returns the table, the SOD F-measure and MAE of every test image (``per_image``) and the networks'
    predictions it scored (``runs``, :func:`predict_all`'s; for :func:`padding_gain` and :func:`crop_shift`)."""
    paper, rows, per_image = _paper_table5(), [], []
    net = profile.downstream.label
    predictions = predict_all(run)
    for (task, pad), model in run.models.items():
        for test in run.tests[task]:
            pred = predictions[(task, pad, test.name)]
            if task == "sod":
                f, err = f_measure(pred, test.labels), mean_absolute_error(pred, test.labels)
                per_image.append(pd.DataFrame(dict(task=task, padding=model.label, test_set=test.name,
                                                   image=np.arange(test.n), f_measure=f, mae=err)))
                cells = [("F-measure (adaptive)", f, np.mean), ("MAE", err, np.mean)]
                cells = [(m, float(v.mean()), _bootstrap(v, s)) for m, v, s in cells]
                cells.append(("max F-measure", max_f_measure(pred, test.labels), (np.nan, np.nan)))
            else:
                n = len(test.classes)
                conf = np.stack([confusion(p, y, n) for p, y in zip(pred, test.labels)])
                miou = lambda c: iou_from_confusion(c.sum(0))[0]  # noqa: E731
                cells = [("mIoU", miou(conf), _bootstrap(conf, miou))]
            for metric, value, (lo, hi) in cells:
                pv, where = _paper_value(paper, task, pad, metric, test.name)
                rows.append(dict(task=task, network=net, padding=model.label, test_set=test.name, metric=metric,
                                 value=value, ci_low=lo, ci_high=hi, n_images=test.n, paper=pv, paper_test_set=where))
    return Result(pd.DataFrame(rows), pd.concat(per_image, ignore_index=True), predictions)


def table5_wide(table: pd.DataFrame) -> pd.DataFrame:
    """Table 5 as the paper prints it: one row per task and padding, 'ours (paper)' per test set and metric."""
    cell = table.apply(lambda r: f"{r.value:.3f}" + ("" if pd.isna(r.paper) else f" ({r.paper:.2f})"), axis=1)
    wide = table.assign(cell=cell, column=table.test_set + ": " + table.metric).pivot_table(
        index=["task", "padding"], columns="column", values="cell", aggfunc="first", sort=False)
    wide.columns.name = None
    return wide.reset_index()


SOD_METRICS = (("F-measure (adaptive)", f_measure, 1), ("MAE", mean_absolute_error, -1))  # (name, per image, better)


def _scored(run: Downstream, predictions: Predictions, s: int, task: str, pad: str, test: TaskData) -> np.ndarray:
    """A network's predictions on ``test``: the first seed's from ``predictions``, the others' from the cache."""
    if s == run.seed:
        return predictions[(task, pad, test.name)]
    return cached_predictions(run.networks(s)[(task, pad)], test)


def _sod_gains(run: Downstream, predictions: Predictions, test: TaskData, fn) -> np.ndarray:
    """Zero padding minus no padding of the per-image SOD metric ``fn`` on ``test``, (seeds, images)."""
    return np.stack([fn(_scored(run, predictions, s, "sod", "zeros", test), test.labels)
                     - fn(_scored(run, predictions, s, "sod", "none", test), test.labels) for s in run.seeds()])


def padding_gain(run: Downstream, predictions: Predictions, seed: int = 0) -> pd.DataFrame:
    """Zero padding minus no padding, per task, test set and metric: what claim 9 is decided on. The gain is the mean
    over the networks' training seeds of each pair's gain on the same test images; its interval the wider, on each
    side, of a paired bootstrap over test images (of the seeds' mean) and a t-interval over the seeds' gains (one
    seed: the bootstrap alone). ``predictions``: the first seed's networks' on every test set (:func:`predict_all`;
    :func:`table5` returns them); the other seeds' are read from the cache or computed (:func:`cached_predictions`)."""
    seeds, rows = run.seeds(), []
    for task, tests in run.tests.items():
        for test in tests:
            if task == "sod":
                for metric, fn, better in SOD_METRICS:
                    diff = _sod_gains(run, predictions, test, fn)  # (seeds, images)
                    lo, hi = _bootstrap(diff.mean(0), np.mean, seed=seed)
                    rows.append(dict(task=task, test_set=test.name, metric=metric, gain=float(diff.mean()),
                                     **_with_seeds(lo, hi, diff.mean(1)), higher_is_better=better > 0))
            else:
                pairs = [(_scored(run, predictions, s, task, "zeros", test), _scored(run, predictions, s, task, "none", test))
                         for s in seeds]
                n = len(test.classes)
                # (images, seeds, 2: with and without padding, n, n)
                conf = np.stack([[[confusion(p, y, n) for p, y in zip(pr, test.labels)] for pr in pair]
                                 for pair in pairs]).transpose(2, 0, 1, 3, 4)
                stat = lambda c: float(np.mean([iou_from_confusion(c[:, k, 0].sum(0))[0]  # noqa: E731
                                                - iou_from_confusion(c[:, k, 1].sum(0))[0] for k in range(c.shape[1])]))
                per_seed = np.array([stat(conf[:, k:k + 1]) for k in range(len(seeds))])
                lo, hi = _bootstrap(conf, stat, seed=seed)
                rows.append(dict(task=task, test_set=test.name, metric="mIoU", gain=float(per_seed.mean()),
                                 **_with_seeds(lo, hi, per_seed), higher_is_better=True))
    return pd.DataFrame(rows)


def position_signature(profile: Profile, run: Downstream, predictions: Predictions, seed: int = 0,
                       n_boot: int = 2000) -> pd.DataFrame:
    """The signature of a position effect in claim 9's SOD gains: padding's gain on the centre-biased scenes minus its
    gain on the scenes with the object placed anywhere (MAE's sign flipped, so positive means padding helps more where
    the object's place follows the training scenes' centre bias), per metric. A network that reads position from
    its padding can learn the centre prior, which pays on the first set and not on the second; a gain that comes from
    elsewhere (the content at the border, say) has no reason to differ. Its interval is the wider, on each side, of a
    bootstrap that resamples each set's scenes (of the seeds' mean gains) and a t-interval over the seeds. Empty
    where the profile's SOD tests are not one centre-biased and one placed-anywhere set of generated scenes."""
    kinds = {spec.name: spec.kind for spec in profile.downstream.sod_tests}
    by_kind = {kinds.get(t.name): t for t in run.tests["sod"]}
    if set(by_kind) != {"sod_scenes", "sod_scenes_anywhere"}:
        return pd.DataFrame(columns=["metric", "signature", "ci_low", "ci_high", "n_seeds", "seed_sd", "centre_gain",
                                     "anywhere_gain"])
    centre, anywhere = by_kind["sod_scenes"], by_kind["sod_scenes_anywhere"]
    rng, rows = np.random.default_rng(seed), []
    for metric, fn, better in SOD_METRICS:
        c, a = better * _sod_gains(run, predictions, centre, fn), better * _sod_gains(run, predictions, anywhere, fn)
        per_seed = c.mean(1) - a.mean(1)
        cm, am = c.mean(0), a.mean(0)
        boots = cm[rng.integers(0, len(cm), (n_boot, len(cm)))].mean(1) - am[rng.integers(0, len(am), (n_boot, len(am)))].mean(1)
        lo, hi = np.quantile(boots, [0.025, 0.975])
        rows.append(dict(metric=metric, signature=float(per_seed.mean()), **_with_seeds(float(lo), float(hi), per_seed),
                         centre_gain=float(c.mean()), anywhere_gain=float(a.mean())))
    return pd.DataFrame(rows)


def _with_seeds(lo: float, hi: float, per_seed: np.ndarray) -> dict:
    """The interval of a gain: the bootstrap's over images (``lo``, ``hi``) widened, on each side, to the t-interval
    over the seeds' gains where there are several; and the seeds' gains' spread."""
    t_lo, t_hi = t_interval(per_seed)
    if np.isfinite(t_lo):
        lo, hi = min(lo, t_lo), max(hi, t_hi)
    return dict(ci_low=lo, ci_high=hi, n_seeds=len(per_seed),
                seed_sd=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"))


# ---------------------------------------------------------------- Table 6: the trained encoders under the probe


TABLE6_PATTERNS = ("H", "G", "HS")


def table6_encoders(profile: Profile, run: Downstream) -> list[tuple[EncoderSpec, str | float]]:
    """(encoder, paper row) for Table 6: the profile's VGG16s (the paper's ImageNet VGG16 row), the
    downstream network at its initial weights (no paper row: the control for training), and the SOD-
    and segmentation-trained networks with zero padding (the paper's VGG16-SOD and VGG16-SS)."""
    out = [(e, "VGG16") for e in profile.encoders if e.name == "vgg16"]
    out.append((EncoderSpec(profile.downstream.encoder_name, "random"), np.nan))
    out += [(run.models[(t, "zeros")].encoder_spec(), {"sod": "VGG16-SOD", "seg": "VGG16-SS"}[t]) for t in TASKS]
    return out


def _table6_rows(profile: Profile, run: Downstream, image_size: int | None) -> tuple[Profile, list]:
    """The profile Table 6 probes in (at ``image_size``) and its rows: (encoder, the paper's row)."""
    prof = profile.with_overrides(image_size=image_size) if image_size and image_size != profile.image_size else profile
    return prof, [(e, p) for e, p in table6_encoders(profile, run)
                  if prof is profile or e.name != "vgg16" or e.weights == "imagenet"]


def table6_probes(profile: Profile, run: Downstream, image_size: int | None = None) -> list[Probe]:
    """The probes of :func:`table6`."""
    prof, encoders = _table6_rows(profile, run, image_size)
    return [(prof, dict(spec=spec)) for spec, _ in encoders]


def table6(profile: Profile, run: Downstream, image_size: int | None = None,
           also: tuple[Profile, ...] = ()) -> Result:
    """Table 6: the Table 1 probe (same readout, training and test images) on each encoder of
    :func:`table6_encoders`, every pattern, one readout seed with 95% intervals over test images; the
    paper's values beside ours where it has the row; the per-image metrics behind it (what claim 10 is decided on)
    and each encoder's probe.

    ``image_size``: probe at that size instead of the profile's (the training and test images made again
    at that size), e.g. the size the downstream networks were trained at; the profile's VGG16s are then
    kept only where they are the paper's reference (ImageNet weights). ``also``: profiles whose Table 6 at
    this size comes next (the budget check), trained now with this one's readouts, sharing their passes."""
    prof, encoders = _table6_rows(profile, run, image_size)
    train_probes(table6_probes(profile, run, image_size) + [p for o in also for p in table6_probes(o, run, image_size)])
    frames, results = [], {}
    photos = test_sources(prof, image_sets(prof)[1])
    for spec, paper_model in encoders:
        result = probe(prof, spec)
        results[spec.label] = result
        frames.append(seeded_summary([result], photos).assign(paper_model=paper_model, image_size=prof.image_size))
    ours = pd.concat(frames, ignore_index=True)
    table = tables.with_paper(ours, prof, "table6")
    cols = table_columns(["encoder", "arch", "weights", "image_size", "pattern", "test_set"], features=False)
    if image_size is None:
        cols.remove("image_size")  # the profile's own size, as every other table (at a size asked for, even the
        # profile's own, the column stays: the notebook's check and the trained-size table read it)
    per_image = pd.concat([per_image_frame([r], photos) for r in results.values()], ignore_index=True)
    return Result(table[cols], per_image, results)


# ---------------------------------------------------------------- Fig 1 and the loss curves


def crop_shift(run: Downstream, test: TaskData, shift: int, predictions: Predictions | None = None) -> pd.DataFrame:
    """How much each SOD network's prediction moves when the image loses its left ``shift`` columns:
    per image, the mean |prediction on the crop - prediction on the image| over the pixels both show.
    ``predictions``: the networks' on the whole images where already made (:func:`table5`'s), else made here."""
    rows = []
    for pad in PADDINGS:
        model = run.models[("sod", pad)]
        full = (predictions or {}).get(("sod", pad, test.name))
        if full is None:
            full = cached_predictions(model, test)
        cropped = cached_predictions(model, test, crop_left=shift)
        change = np.abs(cropped - full[:, :, shift:]).reshape(len(full), -1).mean(axis=1)
        rows += [dict(padding=model.label, image=i, shift=shift, mean_abs_change=float(c)) for i, c in enumerate(change)]
    return pd.DataFrame(rows)


def fig1_crop_shift(run: Downstream, test: TaskData, shift: int, path: Path, index: int = 0) -> plt.Figure:
    """Fig 1: each SOD network on an image and on its copy without the left ``shift`` columns, and the
    difference of the two predictions where both see the scene."""
    scene, image = test.images[index:index + 1], test.frames()[index]
    fig, axes = plt.subplots(2, 5, figsize=(11, 4.6))
    for r, pad in enumerate(PADDINGS):
        model = run.models[("sod", pad)]
        full = predict(model.net, frame_inputs(scene, test.margin, pad), "sod")[0]
        crop = predict(model.net, frame_inputs(scene, test.margin, pad, shift), "sod")[0]
        diff = np.abs(crop - full[:, shift:])
        panels = [(image, None, "image"), (image[:, shift:], None, f"cropped copy (-{shift} px left)"),
                  (full[:, shift:], "gray", "prediction on the image\n(the part the crop shows)"),
                  (crop, "gray", "prediction on the crop"), (diff, "magma", f"|difference| (mean {diff.mean():.3f})")]
        for ax, (im, cmap, title) in zip(axes[r], panels):
            ax.imshow(im, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
            ax.set_title(title, fontsize=8)
            off_axes(ax)
        axes[r, 0].set_ylabel(model.label, fontsize=9)
    fig.suptitle(f"Fig 1: each saliency network on an image and on a cropped copy ({test.name} #{index}; "
                 f"networks trained here)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def _outlined(scene: np.ndarray, margin: int) -> np.ndarray:
    """A scene with the image inside it outlined in white (where the network with padding sees its border)."""
    out = scene.copy()
    if margin:
        a, b = margin - 1, scene.shape[0] - margin
        out[[a, b], a:b + 1] = 255
        out[a:b + 1, [a, b]] = 255
    return out


def plot_task_samples(run: Downstream, path: Path, n: int = 4) -> plt.Figure:
    """The first ``n`` scenes of each task's first test set with their labels (what the networks learn): each image
    outlined in the scene around it, which the network without padding sees and the one with padding does not."""
    fig, axes = plt.subplots(2, 2 * n, figsize=(2 * n * 1.3, 3.2))
    for r, task in enumerate(TASKS):
        test = run.tests[task][0]
        for i in range(n):
            axes[r, 2 * i].imshow(_outlined(test.images[i], test.margin))
            axes[r, 2 * i + 1].imshow(test.labels[i], cmap="gray" if task == "sod" else "viridis", vmin=0,
                                      vmax=max(1, len(test.classes) - 1), interpolation="nearest")
            axes[r, 2 * i].set_title(f"#{i}", fontsize=7)
            axes[r, 2 * i + 1].set_title("mask" if task == "sod" else "/".join(test.classes), fontsize=7)
        for ax in axes[r]:
            off_axes(ax)
        axes[r, 0].set_ylabel(test.name, fontsize=8)
    fig.suptitle("Test scenes (the image outlined in the scene around it) and the image's labels: salient object (top), "
                 "layout segmentation (bottom)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def loss_table(run: Downstream) -> pd.DataFrame:
    """The training loss of each network per epoch, tidy (task, padding, epoch, loss, train_seconds)."""
    return pd.DataFrame([dict(task=t, padding=m.label, epoch=e, loss=loss, train_seconds=round(m.seconds, 1))
                         for (t, _), m in run.models.items() for e, loss in enumerate(m.losses, start=1)])


def plot_loss_curves(losses: pd.DataFrame, path: Path) -> plt.Figure:
    """Training loss per epoch of the four networks (one panel per task), from :func:`loss_table`."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, task in zip(axes, TASKS):
        for pad, curve in losses[losses.task == task].groupby("padding", sort=False):
            ax.plot(curve.epoch, curve.loss, marker="o", label=f"{pad} ({curve.train_seconds.iloc[0]:.0f} s)")
        ax.set_title({"sod": "salient object detection (BCE)", "seg": "segmentation (cross-entropy)"}[task], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- products (posenc_utils.primitives.products)

FIG_SCENES = declare("fig_downstream_scenes", "05", "figure", made_by=plot_task_samples, grid=True)
LOSSES = declare("downstream_losses", "05", "csv", made_by=loss_table)
FIG_LOSSES = declare("fig_downstream_loss", "05", "figure", made_by=plot_loss_curves, drawn_from=LOSSES,
                     draw=plot_loss_curves, readme="downstream")
TABLE5 = declare("table5_downstream", "05", "table", role="Table 5", made_by=table5, per_image=True,
                 readme="downstream")
GAIN = declare("padding_gain", "05", "csv", role="Table 5", made_by=padding_gain, claims=(9,), frame="gain")
SIGNATURE = declare("position_signature", "05", "csv", made_by=position_signature, claims=(9,), frame="signature",
                    readme="downstream")
FIG1 = declare("fig1_crop_shift", "05", "figure", role="Fig 1", made_by=fig1_crop_shift, grid=True, readme="downstream")
SHIFT = declare("crop_shift", "05", "csv", role="Fig 1", made_by=crop_shift)
TABLE6 = declare("table6_task_encoders", "05", "table", role="Table 6", made_by=table6, readme="downstream")
TABLE6_TRAINED = declare("table6_trained_size", "05", "table", role="Table 6", made_by=table6, claims=(10,),
                         frame="table6", per_image=True, budget="frame", readme="downstream")
CLAIMS_9_10 = declare("claims_9_10", "05", "markdown", claims=(9, 10), readme="downstream")
