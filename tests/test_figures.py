"""Notebook 06: figures redrawn from their saved data, the claims of Table 1, the manifest."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from posenc_utils.primitives import devices, timing
from posenc_utils.studies import experiments
from posenc_utils.engine import plots
from posenc_utils.reporting import figures
from posenc_utils.runners import manifest  # noqa: E402
from posenc_utils.models.profiles import get_profile  # noqa: E402


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)


def test_image_figure_redraws_from_its_saved_data_alone(tmp_path):
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(2, 3, figsize=(5, 3.4))
    axes[0, 0].imshow(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    axes[0, 1].imshow(rng.random((16, 16)), cmap="magma", vmin=0, vmax=1)
    axes[0, 2].imshow(rng.random((8, 12)), cmap="gray", vmin=0.2, vmax=0.8, interpolation="nearest")
    axes[1, 0].text(0.9, 0.5, "a row\nlabel", ha="right", va="center", fontsize=7, transform=axes[1, 0].transAxes)
    axes[1, 1].imshow(rng.random((16, 16)), cmap="jet")
    axes[1, 1].set_ylabel("side", fontsize=9)
    axes[1, 2].imshow(rng.random((16, 16)))
    for ax in axes.ravel():
        plots.off_axes(ax)
        ax.set_title("t", fontsize=7)
    axes[1, 0].set_frame_on(False)
    fig.suptitle("a grid", fontsize=9)
    fig.tight_layout()
    plots.save_figure(fig, tmp_path / "f.png")
    saved = plots.grid_path(tmp_path / "f.png")
    assert saved == tmp_path / "results" / "f.grid.npz" and saved.exists()
    again = plots.redraw_grid(saved)
    a, b = _pixels(fig), _pixels(again)
    assert a.shape == b.shape
    assert (np.abs(a - b) > 8).mean() < 0.002, "the redrawn figure looks like the original"


def test_line_figures_keep_no_grid_data(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    plots.save_figure(fig, tmp_path / "line.png", (".png", ".pdf"))
    assert (tmp_path / "line.png").exists() and (tmp_path / "line.pdf").exists()
    assert not plots.grid_path(tmp_path / "line.png").exists()


def test_redraw_without_results_names_the_notebooks(tmp_path):
    with pytest.raises(figures.ResultsMissingError, match="run notebooks 01-05"):
        figures.redraw_figures(tmp_path)


def test_manifest_names_what_made_the_results(tmp_path):
    (tmp_path / "t.csv").write_text("a\n1\n")
    timing.TIMES.path(tmp_path).write_text(json.dumps({"profile": "quick", "cold": {"notebooks_s": {"01": 3}}}))
    path = manifest.write_manifest(tmp_path, get_profile("quick"))
    m = json.loads(path.read_text())
    assert m["profile"] == "quick" and m["seeds"] == [0, 1] and m["notebook_times_s"] == {"cold": {"01": 3}}
    assert len(m["git_commit"]) == 40 and m["packages"]["torch"] and m["machine"]["cpus"] >= 1
    assert m["machine"]["cpu"] == devices.cpu_model() and m["machine"]["cpu"].strip()
    assert "t.csv" in m["results"] and manifest.MANIFEST.file() not in m["results"]


def test_unchanged_image_figure_is_not_rendered_again(tmp_path):
    def draw(value):
        fig, axes = plt.subplots(1, 2)
        axes[0].imshow(np.full((4, 4), value), cmap="gray", vmin=0, vmax=1)
        axes[1].imshow(np.eye(4), cmap="gray")
        return fig

    plots.save_figure(draw(0.5), tmp_path / "g.png", (".png", ".pdf"))
    png = tmp_path / "g.png"
    stamp = png.stat().st_mtime_ns
    plots.save_figure(draw(0.5), tmp_path / "g.png", (".png", ".pdf"))
    assert png.stat().st_mtime_ns == stamp, "same data, same files: nothing rendered"
    plots.save_figure(draw(0.7), tmp_path / "g.png", (".png", ".pdf"))
    assert png.stat().st_mtime_ns != stamp, "other data: rendered again"
    stamp = png.stat().st_mtime_ns
    (tmp_path / "g.pdf").unlink()
    plots.save_figure(draw(0.7), tmp_path / "g.png", (".png", ".pdf"))
    assert (tmp_path / "g.pdf").exists(), "a missing file is rendered"


def test_a_file_drawn_from_older_data_is_drawn_again(tmp_path):
    """A notebook redraws its figure's PNG from new data; the PDF notebook 06 drew from the old data is not
    taken for current (it is drawn again), and once both come from the saved data nothing needs drawing."""
    def draw(value):
        fig, ax = plt.subplots()
        ax.imshow(np.full((4, 4), value), cmap="gray", vmin=0, vmax=1)
        return fig

    png, both = tmp_path / "g.png", (".png", ".pdf")
    plots.save_figure(draw(0.5), png, both)
    assert plots.drawn(png, both)
    plots.save_figure(draw(0.7), png)  # the notebook: PNG only, from other data
    assert plots.drawn(png, (".png",)) and not plots.drawn(png, both), "the PDF shows the old data"
    pdf = (tmp_path / "g.pdf").stat().st_mtime_ns
    plots.save_figure(plots.redraw_grid(plots.grid_path(png)), png, both)  # notebook 06
    assert (tmp_path / "g.pdf").stat().st_mtime_ns != pdf and plots.drawn(png, both)


def test_csv_rewritten_only_when_it_changes(tmp_path):
    from posenc_utils.engine import tables

    path = tmp_path / "t.csv"
    tables.write_csv(pd.DataFrame({"a": [1, 2]}), path)
    stamp = path.stat().st_mtime_ns
    tables.write_csv(pd.DataFrame({"a": [1, 2]}), path)
    assert path.stat().st_mtime_ns == stamp
    tables.write_csv(pd.DataFrame({"a": [1, 3]}), path)
    assert pd.read_csv(path).a.tolist() == [1, 3]


def test_labels_of_close_points_are_spread_until_none_overlap():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    close = [ax.annotate(name, (0.3, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
             for name, y in (("first label", 0.5), ("second label", 0.505), ("third label", 0.495))]
    alone = ax.annotate("far away", (0.8, 0.1), xytext=(3, 3), textcoords="offset points", fontsize=6)
    plots.spread_labels(fig, close + [alone])
    fig.set_dpi(plots.DPI)
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in close]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[:i])
    assert close[0].xyann == (3, 3) and alone.xyann == (3, 3), "the first and a lone label keep their places"
    assert close[1].xyann[1] > 3 > close[2].xyann[1], "a label moves away from the one it overlaps"
    plt.close(fig)
