"""Benchmark Table 1 from a cold cache: wall time, peak memory, and where the time goes.

``python -m posenc_utils.bench --profile offline`` computes every image set, feature array and
readout of Table 1 in a temporary cache (so nothing is reused), then reports the wall time,
the peak resident memory, the share spent in encoder forward passes (the irreducible part)
and the rest (overhead to cut), and writes ``benchmark_table1.json`` beside the profile's tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time

import torch


def run(profile_name: str, output_dir: str = "", keep_cache: bool = False) -> dict:
    from . import experiments, features, paths
    from .profiles import get_profile

    profile = get_profile(profile_name)
    with tempfile.TemporaryDirectory(prefix="posenc-bench-") as tmp:
        if not keep_cache:
            os.environ["POSENC_CACHE_DIR"] = tmp
        features.TIMINGS.clear()
        t0 = time.perf_counter()
        t_sets = time.perf_counter()
        experiments.image_sets(profile)
        t_sets = time.perf_counter() - t_sets
        _, results = experiments.table1(profile)
        wall = time.perf_counter() - t0
    train_s = sum(r.readout.train_seconds for r in results.values())
    fwd = features.TIMINGS["encoder_forward"]
    report = {
        "profile": profile_name,
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "encoder_forward_s": round(fwd, 1),
        "encoder_forward_share": round(fwd / wall, 3),
        "encoder_build_s": round(features.TIMINGS["encoder_build"], 1),
        "resize_and_store_s": round(features.TIMINGS["resize_and_store"], 1),
        "image_sets_s": round(t_sets, 1),
        "readout_training_s": round(train_s, 1),
        "other_s": round(wall - fwd - features.TIMINGS["encoder_build"] - features.TIMINGS["resize_and_store"]
                         - t_sets - train_s, 1),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{os.cpu_count()}",
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cold_cache": not keep_cache,
    }
    out = paths.output_dir(profile_name, output_dir or None) / "benchmark_table1.json"
    out.write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m posenc_utils.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="offline", choices=("quick", "offline", "paper"))
    ap.add_argument("--output-dir", default="")
    ap.add_argument("--keep-cache", action="store_true", help="use the normal cache (measures a warm rerun)")
    args = ap.parse_args(argv)
    report = run(args.profile, args.output_dir, args.keep_cache)
    width = max(map(len, report))
    for k, v in report.items():
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
