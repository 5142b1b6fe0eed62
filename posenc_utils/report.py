"""Refresh the README's generated sections from the study's own products.

``python -m posenc_utils.report`` rewrites the text between ``<!-- headline:start -->`` and
``<!-- headline:end -->`` (Table 1 SPC, ours beside the paper's, and how long the main job
took) and between ``<!-- deviations:start -->`` / ``<!-- deviations:end -->``, from
``figures/offline/``. Nothing in those sections is typed by hand.
"""
from __future__ import annotations

import json
import re
import sys

import pandas as pd

from . import paths
from .profiles import deviations, get_profile
from .tables import spc_overview

README = paths.PROJ_ROOT / "README.md"


def headline(profile: str = "offline") -> str:
    """Markdown: Table 1 SPC overview and the main job's run time, read from the profile's outputs."""
    out = paths.FIGURES_DIR / profile
    table = pd.read_csv(out / "table1_position_info.csv")
    md = spc_overview(table).to_markdown(index=False)
    lines = [f"Table 1, `{profile}` profile: SPC ours (paper's in parentheses; `[k undef.]`: k images with a "
             f"constant prediction, counted as 0). Source: `figures/{profile}/table1_position_info.csv`.", "", md]
    times = out / "pipeline_times.json"
    if times.exists():
        t = json.loads(times.read_text())
        lines += ["", f"The main job (`make reproduce`, every notebook) took {t['total_s'] / 60:.0f} min on "
                      f"{t['cpus']} CPU cores ({t['date']}); a rerun reuses the cache and takes a fraction of that."]
    bench = out / "benchmark_table1.json"
    if bench.exists():
        b = json.loads(bench.read_text())
        lines += ["", f"`make bench` (Table 1 alone, cold cache, {b['device']}): {b['wall_s'] / 60:.1f} min wall, "
                      f"peak memory {b['peak_rss_gb']:.1f} GB, {100 * b['encoder_forward_share']:.0f}% of the time in "
                      f"encoder forward passes, {b['readout_training_s'] / 60:.1f} min training the readouts "
                      f"(`figures/{profile}/benchmark_table1.json`)."]
    return "\n".join(lines)


def deviations_markdown() -> str:
    """Every profile's deviations: offline and paper in full, quick as what it adds to offline."""
    offline, paper = deviations(get_profile("offline")), deviations(get_profile("paper"))
    quick = [d for d in deviations(get_profile("quick")) if d not in offline]
    lines = ["**offline** (the main job):", *(f"- {d}" for d in offline), "",
             "**paper**:", *(f"- {d}" for d in paper), "",
             "**quick**: as offline, and:", *(f"- {d}" for d in quick)]
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> int:
    text = README.read_text()
    text = replace_section(text, "headline", headline("offline"))
    text = replace_section(text, "deviations", deviations_markdown())
    README.write_text(text)
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
