"""Benchmark Table 1 from a cold cache, against the floor this machine sets in the same run.

``python -m posenc_utils.bench --profile offline`` computes every image set, feature array and
readout of Table 1 in an empty temporary cache, then measures, in the same process:

* the **encoder floor**: for each encoder, the best time per image of a bare forward pass of its
  network up to its last tap (channels-last, inference mode, no hooks, no preprocessing, the best
  of batch sizes 1..8, best of the measurements around its extraction), times the images it must see. No
  implementation of the study can extract features faster than that;
* the **readout floor**: the first-layer matrix-product arithmetic of every readout Table 1 trains
  (forward and gradient, counted per readout) at the machine's dense float32 matrix-product rate,
  measured before and after the run (the better counts). ``floor`` = encoder floor + readout floor,
  and ``wall / floor`` is the headline: how far the run is from what this machine's arithmetic allows;
* the readouts' achieved GFLOP/s and the encoders' own, beside that matrix-product rate;
* peak resident memory (``ru_maxrss``, as ``/usr/bin/time -v`` reports it: memory-mapped file
  pages that were touched count), time per phase, the encoder overhead ratio (extraction with
  resizing and storing, over the floor) and seconds per readout epoch for each encoder.

It writes :data:`BENCHMARK` beside the profile's tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..engine.features import stored_bytes
from ..primitives import devices, paths, standin, timing
from ..primitives.specs import EncoderSpec, ImageSetSpec
from ..studies import experiments
from ..models.families import family_of
from ..primitives.products import declare
from ..models.profiles import get_profile


def bare_network(spec, image_size: int) -> nn.Module | None:
    """The encoder's network up to its last tap, as plain modules (no hooks, no preprocessing, random
    weights: speed does not depend on them), as its family declares it. None for the controls."""
    return family_of(spec.name).bare(spec, image_size)


def _network_id(spec) -> tuple:
    """What decides a bare network's speed (not its weights)."""
    return spec.name, spec.padding, spec.taps


def best_forward(net: nn.Module, image_size: int, batch_sizes=(1, 2, 4, 8), repeats: int = 2) -> dict:
    """Best seconds per image of ``net`` over batch sizes (channels-last, inference mode)."""
    net = net.eval().to(memory_format=torch.channels_last)
    per_batch = {}
    with torch.inference_mode():
        for b in batch_sizes:
            x = torch.rand(b, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
            net(x)  # warm-up: first calls allocate and choose algorithms
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                net(x)
                best = min(best, time.perf_counter() - t0)
            per_batch[b] = best / b
    batch = min(per_batch, key=per_batch.get)
    return {"s_per_image": per_batch[batch], "batch_size": batch, "by_batch_size": per_batch}


def forward_gflop(net: nn.Module, image_size: int) -> float:
    """Floating-point operations (GFLOP) of one image's forward pass, counted by torch."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        net(torch.rand(1, 3, image_size, image_size).contiguous(memory_format=torch.channels_last))
    return counter.get_total_flops() / 1e9


def dense_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's dense float32 matrix-product speed (best of ``repeats``)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run(profile_name: str, output_dir: str = "", keep_cache: bool = False, profile=None,
        batch_sizes=(1, 2, 4, 8)) -> dict:
    """Benchmark Table 1 of ``profile_name`` (or of ``profile``, a Profile) and write the JSON report.

    Each encoder's floor is measured just before and just after its features are extracted, and
    the best measurement of each network counts (the two VGG16s share one): a shared machine's
    speed drifts by tens of percent over minutes, and a floor caught at a slow moment would flatter
    the run. The measuring is excluded from the wall time.
    """
    profile = profile or get_profile(profile_name)
    floors: dict[tuple, dict] = {}  # per bare network (one for both VGG16s): the best measurement
    measuring = 0.0

    def measure(spec) -> None:
        nonlocal measuring
        t1 = time.perf_counter()
        net = bare_network(spec, profile.image_size)
        if net is not None:
            fwd = best_forward(net, profile.image_size, batch_sizes)
            old = floors.get(_network_id(spec))
            if old is None or fwd["s_per_image"] < old["s_per_image"]:
                floors[_network_id(spec)] = {**fwd, "gflop": forward_gflop(net, profile.image_size)}
        measuring += time.perf_counter() - t1

    matmul_before = dense_matmul_gflops()
    with (timing.record() as clock, tempfile.TemporaryDirectory(prefix="posenc-bench-") as tmp,
          paths.environ("POSENC_CACHE_DIR", None if keep_cache else tmp)):
        t0 = time.perf_counter()
        train, tests = experiments.image_sets(profile)
        for spec in profile.encoders:
            measure(spec)  # before and after its extraction: a bad moment of the machine is not the floor
            for image_set in (train, *tests):  # Table 1 below finds these in the cache
                experiments.features_for(profile, spec, image_set)
            measure(spec)
        results = experiments.table1(profile).runs
        wall = time.perf_counter() - t0 - measuring
        readout_gflop = {spec.label: sum(r.readout.gflop for r in experiments.probe_seeds(profile, spec))
                         for spec in profile.encoders}  # every seed's readout (cached now: loaded)
        disk = {d.name: sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
                for d in paths.cache_dir().iterdir() if d.is_dir()}
    rss = peak_rss_gb()
    matmul = max(matmul_before, dense_matmul_gflops())
    n_images = train.n + sum(t.n for t in tests)
    phases = {k: round(v, 1) for k, v in sorted(clock.seconds.items(), key=lambda kv: -kv[1])}
    phases["other"] = round(wall - sum(clock.seconds.values()), 1)

    encoders, floor = {}, 0.0
    for spec in profile.encoders:
        r = results[spec.label].readout
        epochs = sorted(r.epoch_seconds)
        entry = {
            "readout_s_per_epoch": round(epochs[len(epochs) // 2], 2) if epochs else None,
            "readout_gflops": round(r.gflop / len(epochs) / epochs[len(epochs) // 2], 1) if epochs else None,
            "readout_train_s": round(r.train_seconds, 1),
            "readout_gflop": round(readout_gflop[spec.label], 1),
            "readout_floor_s": round(readout_gflop[spec.label] / matmul, 2),
        }
        if _network_id(spec) in floors:
            fwd = floors[_network_id(spec)]
            ex = clock.extractions[spec.label]
            extraction = ex["encoder_forward"] + ex["resize_and_store"] + ex["encoder_build"]
            entry.update({
                "floor_s_per_image": round(fwd["s_per_image"], 5),
                "floor_batch_size": fwd["batch_size"],
                "floor_s_per_image_by_batch_size": {b: round(v, 5) for b, v in fwd["by_batch_size"].items()},
                "floor_s": round(fwd["s_per_image"] * n_images, 2),
                "extraction_s": round(extraction, 1),
                "extraction_s_per_image": round(extraction / max(ex["images"], 1), 4),
                "encoder_overhead_ratio": round(extraction / (fwd["s_per_image"] * max(ex["images"], 1)), 3),
                "encoder_gflop_per_image": round(fwd["gflop"], 2),
                "encoder_gflops_at_floor": round(fwd["gflop"] / fwd["s_per_image"], 1),
            })
            floor += fwd["s_per_image"] * n_images
        encoders[spec.label] = entry
    readout_floor = sum(readout_gflop.values()) / matmul
    report = {
        "profile": profile.name,
        "cold_cache": not keep_cache,
        "wall_s": round(wall, 2),
        "floor_s": round(floor + readout_floor, 2),
        "wall_over_floor": round(wall / (floor + readout_floor), 2) if floor + readout_floor else None,
        "encoder_floor_s": round(floor, 2),
        "readout_floor_s": round(readout_floor, 2),
        "wall_over_encoder_floor": round(wall / floor, 2) if floor else None,
        "peak_rss_gb": round(rss, 2),
        "images_per_encoder": n_images,
        "training_images": train.n,
        "cache_bytes": disk,
        "planned_feature_bytes": sum(stored_bytes(n_images, profile.readout.feature_size,
                                                  results[s.label].train_features.n_channels, profile.feature_dtype)
                                     for s in profile.encoders),
        "phases_s": phases,
        "floor_measuring_s": round(measuring, 1),
        "dense_matmul_gflops": round(matmul, 1),
        "encoders": encoders,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{os.cpu_count()}",
        "cpu": devices.cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    out = BENCHMARK.path(paths.output_dir(profile.name, output_dir or None))
    out.write_text(json.dumps(report, indent=1))
    return report


def report_text(report: dict) -> str:
    """A few lines of plain text: the headline, then per encoder."""
    lines = [f"Table 1 ({report['profile']}, cold cache: {report['cold_cache']}, {report['device']}): "
             f"{report['wall_s'] / 60:.1f} min wall = {report['wall_over_floor']}x the floor "
             f"({report['floor_s'] / 60:.1f} min: encoders' bare forward passes {report['encoder_floor_s'] / 60:.1f} min "
             f"+ readouts' arithmetic at the matrix-product rate {report['readout_floor_s'] / 60:.1f} min), "
             f"peak RSS {report['peak_rss_gb']:.2f} GB",
             "phases (s): " + ", ".join(f"{k} {v}" for k, v in report["phases_s"].items()),
             f"dense matrix product: {report['dense_matmul_gflops']} GFLOP/s"]
    for label, e in report["encoders"].items():
        enc = (f"; extraction {e['extraction_s_per_image']:.3f} s/image = {e['encoder_overhead_ratio']}x the bare "
               f"forward ({e['floor_s_per_image']:.3f} s/image at batch {e['floor_batch_size']}, "
               f"{e['encoder_gflops_at_floor']} GFLOP/s)") if "floor_s" in e else ""
        lines.append(f"  {label}: readout {e['readout_s_per_epoch']} s/epoch, {e['readout_gflops']} GFLOP/s "
                     f"(trained {e['readout_train_s']} s, floor {e['readout_floor_s']} s){enc}")
    return "\n".join(lines)


SCALE_SIZES = (1000, 3000, standin.DUTS_TR_N)
SCALE_ENCODER = "vgg16bn_w8"  # notebook 05's network at 1/8 of VGG16's width: VGG16's shape, 184 channels


def scale_profile(n_train: int, encoder: str = SCALE_ENCODER):
    """The paper profile's Table 1 on the first ``n_train`` DUTS-TR images, with one small random-init encoder."""
    paper = get_profile("paper")
    return paper.with_overrides(train_set=ImageSetSpec("DUTS-TR", "folder", n=n_train, dataset="DUTS-TR"),
                                encoders=(EncoderSpec(encoder, "random"),))


def scale_summary(points: list[dict]) -> dict:
    """How a run grows with its training images: the seconds each added image costs between consecutive points
    (equal slopes: linear growth; the fixed part, the test sets and the floors, drops out), the largest peak memory,
    and each point's stored features over the plan's arithmetic for them."""
    slopes = [(b["wall_s"] - a["wall_s"]) / (b["training_images"] - a["training_images"])
              for a, b in zip(points, points[1:])]
    return {
        "seconds_per_added_image": [round(x, 4) for x in slopes],
        "slope_ratio_last_over_first": round(slopes[-1] / slopes[0], 3) if slopes and slopes[0] > 0 else None,
        "max_peak_rss_gb": max(p["peak_rss_gb"] for p in points),
        "features_over_plan": [round(p["cache_bytes"].get("features", 0) / p["planned_feature_bytes"], 4)
                               for p in points],
    }


def scale(sizes=SCALE_SIZES, root: str = "data/standin", encoder: str = SCALE_ENCODER, output_dir: str = "") -> dict:
    """The paper profile's Table 1 at each number of training images in ``sizes`` (PASCAL-S's 850 and black/white/
    noise to test), each from a cold cache in a process of its own (its own peak memory), on generated folders in
    the releases' layouts and sizes (made in ``root`` when missing): time, peak resident memory, and the disk the
    cache took against the plan's arithmetic. Writes :data:`SCALE` beside the offline profile's records."""
    root_path = Path(root)
    images = standin.folders("DUTS-TR", root_path)[0]
    have = len(list(images.glob("*.jpg"))) if images.exists() else 0
    if have < max(sizes):
        print(f"making the paper's folder layouts in {root} ({max(sizes)} DUTS-TR images)", flush=True)
        standin.make_paper_layouts(root_path, duts_tr=max(sizes))
    points = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="posenc-scale-") as tmp:
            env = {**os.environ, "POSENC_DATA_ROOT": str(root_path.resolve()), "POSENC_PROGRESS": "lines"}
            cmd = [sys.executable, "-m", "posenc_utils.bench", "--profile", "paper", "--train-n", str(n),
                   "--encoder", encoder, "--output-dir", tmp]
            subprocess.run(cmd, env=env, check=True)
            report = json.loads(BENCHMARK.path(Path(tmp) / "paper").read_text())
        points.append({"training_images": n, **{k: report[k] for k in (
            "wall_s", "floor_s", "wall_over_floor", "peak_rss_gb", "images_per_encoder", "cache_bytes",
            "planned_feature_bytes", "phases_s")}})
        print(f"{n} training images: {report['wall_s']:.0f} s, peak RSS {report['peak_rss_gb']:.2f} GB", flush=True)
    record = {
        "what": "the paper profile's Table 1 (15 epochs, 1 readout seed for a random-init encoder) on generated "
                "DUTS-TR/PASCAL-S folders at the releases' counts and usual sizes, one small encoder",
        "encoder": encoder, "points": points, **scale_summary(points),
        "cpu": devices.cpu_model(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    out = SCALE.path(paths.output_dir("offline", output_dir or None))
    out.write_text(json.dumps(record, indent=1))
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m posenc_utils.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="offline", choices=("quick", "offline", "paper"))
    ap.add_argument("--output-dir", default="")
    ap.add_argument("--keep-cache", action="store_true", help="use the normal cache (measures a warm rerun)")
    ap.add_argument("--train-n", type=int, help="the paper profile's Table 1 on this many DUTS-TR images "
                                                "(with --encoder; the scale benchmark's points)")
    ap.add_argument("--encoder", default=SCALE_ENCODER, help="the one encoder of --train-n and --scale")
    ap.add_argument("--scale", nargs="*", type=int, metavar="N",
                    help=f"the scale benchmark: the paper profile's Table 1 at each N training images (default "
                         f"{' '.join(map(str, SCALE_SIZES))}) on generated folders in --root")
    ap.add_argument("--root", default="data/standin", help="where the scale benchmark's generated folders are")
    args = ap.parse_args(argv)
    os.environ.setdefault("POSENC_PROGRESS", "lines")
    if args.scale is not None:
        record = scale(tuple(args.scale) or SCALE_SIZES, args.root, args.encoder, args.output_dir)
        print(json.dumps({k: v for k, v in record.items() if k != "points"}, indent=1))
        return 0
    profile = scale_profile(args.train_n, args.encoder) if args.train_n else None
    print(report_text(run(args.profile, args.output_dir, args.keep_cache, profile=profile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())


BENCHMARK = declare("benchmark_table1", "", "json", made_by=run, optional=True)  # `make bench`
SCALE = declare("benchmark_paper_scale", "", "json", made_by=scale, optional=True)  # `make bench-scale`
