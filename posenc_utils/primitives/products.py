"""Every product of the study (table, figure, per-image results, report), each declared once.

A study module declares what it makes beside the function that makes it, in the style of timm's model
registry::

    TABLE1 = declare("table1_position_info", "02", "table", role="Table 1", made_by=table1, claims=(1, 2, 3, 4),
                     frame="table1", budget="table", readme="Claims 1-4 and Table 1")

and everything else reads the declaration: the notebooks write through it (``TABLE1.csv(out)``), their check cells
ask :func:`missing`, notebook 06 redraws the figures whose ``draw`` it names, the claims read the per-image frames
by ``frame``, the README's report links what ``readme`` names, and a test checks that every file a run writes is
declared and that no file name is typed anywhere else. The registry is complete once the study modules are
imported (:mod:`posenc_utils.reporting.figures` imports them all).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

RESULTS = "results"  # the subfolder of per-image results and figure data
KINDS = {  # kind -> the files it is written as (its name + each suffix)
    "table": (".csv", ".md"),  # the full-precision table and its rounded Markdown with a caption
    "csv": (".csv",),
    "figure": (".png", ".pdf"),
    "markdown": (".md",),
    "report": (".md", ".csv"),  # a claims report: its Markdown and its verdict table
    "json": (".json",),
    "page": (".md", ".html"),  # a page of its own: Markdown and self-contained HTML
    "folder": (),  # a folder of files made per item (the atlas's cards and rows): every file under ``folder``
    "frame": (),  # per-image results only (``results/<name>_per_image.csv``)
}
BUDGET = ("table", "frame")  # a larger-budget twin: a table of its own, or its per-image frame only
BUDGET_SUFFIX = "_budget"
PER_IMAGE_SUFFIX = "_per_image.csv"
GRID_SUFFIX = ".grid.npz"


@dataclass(frozen=True)
class Product:
    """One product: its file name (without suffix), the notebook that writes it, its kind (:data:`KINDS`), its
    role in the paper, the experiment that makes it, how a figure is drawn from a table, the claims that read it
    (under ``frame``), its larger-budget twin, the README section that shows it."""

    name: str
    notebook: str  # "01".."08", or "" for the runner's own files
    kind: str
    role: str = ""  # "Table 1", "Fig 4"; "" where the paper has none (beyond the paper)
    made_by: Callable[..., Any] | None = None  # the experiment (or drawing function) that makes it
    drawn_from: "Product | None" = None  # a figure notebook 06 redraws from this table's CSV ...
    draw: Callable[..., Any] | None = None  # ... with draw(table, path)
    claims: tuple[int, ...] = ()  # the claims decided on it
    frame: str | None = None  # the key the claims' rules read its per-image results under
    per_image: bool = False  # writes results/<name>_per_image.csv
    budget: str | None = None  # its larger-budget twin (BUDGET), written beside it
    readme: str | None = None  # the README section that links it (posenc_utils.reporting.report)
    optional: bool = False  # written only where another command made its data (`make extended`)
    grid: bool = False  # a figure of image panels: its data kept in results/<name>.grid.npz, redrawn from them
    folder: str = ""  # kind "folder": the folder (relative to the output folder) whose files are its

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"product {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.budget not in (None, *BUDGET):
            raise ValueError(f"product {self.name!r}: budget {self.budget!r} is not one of None, {', '.join(BUDGET)}")
        if (self.drawn_from is None) != (self.draw is None):
            raise ValueError(f"product {self.name!r}: a figure drawn from a table names both the table and draw")
        if self.kind == "frame" and not self.per_image:
            object.__setattr__(self, "per_image", True)

    @property
    def suffixes(self) -> tuple[str, ...]:
        return KINDS[self.kind]

    def file(self, suffix: str | None = None) -> str:
        """The product's file name with ``suffix`` (default: its kind's first)."""
        return self.name + (self.suffixes[0] if suffix is None else suffix)

    def path(self, out: Path, suffix: str | None = None) -> Path:
        return Path(out) / self.file(suffix)

    def csv(self, out: Path) -> Path:
        return self.path(out, ".csv")

    def md(self, out: Path) -> Path:
        return self.path(out, ".md")

    def png(self, out: Path) -> Path:
        return self.path(out, ".png")

    def per_image_file(self, budget: bool = False) -> str:
        """``results/<name>[_budget]_per_image.csv``: the per-image results behind it (or its larger-budget twin's),
        relative to the output folder."""
        return f"{RESULTS}/{self.name}{BUDGET_SUFFIX if budget else ''}{PER_IMAGE_SUFFIX}"

    def per_image_path(self, out: Path, budget: bool = False) -> Path:
        return Path(out) / self.per_image_file(budget)

    @property
    def twin(self) -> "Product":
        """The larger-budget twin: the same experiment with readouts trained longer."""
        if self.budget is None:
            raise ValueError(f"product {self.name!r} has no larger-budget twin")
        kind = self.kind if self.budget == "table" else "frame"
        return Product(self.name + BUDGET_SUFFIX, self.notebook, kind, self.role, self.made_by,
                       claims=self.claims, per_image=self.per_image)

    def files(self) -> list[str]:
        """Every file it writes, relative to the output folder (its twin's included)."""
        names = [self.file(s) for s in self.suffixes]
        if self.grid:
            names.append(f"{RESULTS}/{self.name}{GRID_SUFFIX}")
        if self.per_image:
            names.append(self.per_image_file())
        if self.budget:
            names += self.twin.files()  # a table's twin: its table and per-image results; a frame's: the latter
        return names


REGISTRY: dict[str, Product] = {}


def declare(name: str, notebook: str, kind: str, **fields) -> Product:
    """Declare a product (once: a second declaration of the same name is an error) and return it."""
    if name in REGISTRY:
        raise ValueError(f"product {name!r} is declared twice (first by notebook {REGISTRY[name].notebook})")
    product = Product(name, notebook, kind, **fields)
    REGISTRY[name] = product
    return product


def declared(notebook: str | None = None) -> list[Product]:
    """The declared products (of one notebook), in the order they were declared."""
    return [p for p in REGISTRY.values() if notebook is None or p.notebook == notebook]


def by_frame(key: str) -> Product:
    """The product whose per-image results the claims read under ``key``."""
    for p in REGISTRY.values():
        if p.frame == key:
            return p
    keys = ", ".join(sorted(p.frame for p in REGISTRY.values() if p.frame)) or "none (import posenc_utils.reporting.figures)"
    raise KeyError(f"no product is declared with frame {key!r}: the declared ones are {keys}")


def frames() -> list[Product]:
    """The products the claims' rules read, in the order they were declared."""
    return [p for p in REGISTRY.values() if p.frame]


def missing(out: Path, notebook: str, optional: bool = False) -> list[str]:
    """The files of ``notebook``'s products that are not in ``out`` (optional products left out unless asked). A
    figure's PDF is notebook 06's to write (it redraws every figure in both formats), so notebooks 01-05 are not
    asked for it."""
    return [f for p in declared(notebook) if optional or not p.optional for f in p.files()
            if not (Path(out) / f).exists() and (notebook == "06" or not f.endswith(".pdf"))]


def owner(file: str) -> Product | None:
    """The product a file of an output folder belongs to (``results/...`` paths included), or None."""
    for p in REGISTRY.values():
        if file in p.files() or (p.folder and file.startswith(p.folder + "/")):
            return p
    return None
