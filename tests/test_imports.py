"""The package's imports run one way: no circle (``if TYPE_CHECKING:`` imports included), no arrow from a
lower layer to a higher one, and no import inside a function except of an optional heavy library. Read
from the source with ``ast``."""
from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "posenc_utils"

# The layers, bottom up: a module may import from its own layer or a lower one. A new module goes into
# the lowest layer whose modules it needs.
LAYERS = (
    # primitives: no import from the package, or only from each other
    ("__init__", "paths", "products", "datasets", "timing", "devices", "progress", "metrics", "targets", "borders", "positions", "scenes",
     "task_metrics", "pages", "cache", "specs"),
    # networks: the parts, notebook 05's network core, the families, the settings that name them, the builder
    ("networks", "scenenet", "families", "profiles", "encoders"),
    # data: images, features, their measures and readouts, tables and plots of them
    ("images", "features", "engine", "measures", "readout", "plots", "tables", "evidence"),
    # probing an encoder: the experiments every notebook shares
    ("experiments",),
    # the notebooks' modules and what reads their products
    ("budget", "padding_ablation", "layer_analysis", "downstream", "claims", "extended", "findings", "show", "figures",
     "report", "bench", "compare"),
    # running the study
    ("manifest", "plan", "pipeline", "probe"),
)
# Libraries a function may import when it needs them: optional, or heavy and needed by few calls.
LAZY_OK = {"seaborn", "papermill", "jupyter_client", "jupyter_core", "nbconvert", "IPython", "timm", "h5py", "matplotlib", "xxhash", "torchvision",
           "efficientnet_lite_pytorch", "safetensors"}


def _tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text())


def _package_imports(node: ast.AST) -> set[str]:
    """The package modules a statement (and everything under it) imports."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.ImportFrom) and n.level == 1:
            out |= {n.module.split(".")[0]} if n.module else {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and (n.module or "").startswith("posenc_utils"):
            out |= {n.module.split(".")[1]} if "." in n.module else {a.name for a in n.names}
        elif isinstance(n, ast.Import):
            out |= {a.name.split(".")[1] for a in n.names if a.name.startswith("posenc_utils.")}
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, anywhere in it: an import under ``if TYPE_CHECKING:`` counts (a
    circle of type hints is a circle in the design, however Python runs it)."""
    return {p.stem: _package_imports(_tree(p.stem)) for p in sorted(PACKAGE.glob("*.py"))}


def test_every_module_has_a_layer():
    layered = [m for layer in LAYERS for m in layer]
    assert len(layered) == len(set(layered))
    assert set(layered) == {p.stem for p in PACKAGE.glob("*.py")}, "put each new module in LAYERS"


def test_no_import_circle():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def upward(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """The imports of ``graph`` from a lower layer to a higher one."""
    level = {m: i for i, layer in enumerate(layers) for m in layer}
    return [f"{m} (layer {level[m]}) imports {d} (layer {level[d]})"
            for m, deps in graph.items() for d in sorted(deps) if level[d] > level[m]]


def test_no_import_from_a_lower_layer_to_a_higher_one():
    found = upward(import_graph())
    assert not found, "\n".join(found)


def test_no_import_inside_a_function_but_optional_heavy_libraries():
    found = []
    for p in sorted(PACKAGE.glob("*.py")):
        for fn in ast.walk(_tree(p.stem)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                if isinstance(n, ast.ImportFrom):
                    names = [n.module or ""] if n.level == 0 else [f".{n.module or ''}"]
                elif isinstance(n, ast.Import):
                    names = [a.name for a in n.names]
                else:
                    continue
                found += [f"{p.name}:{n.lineno} {fn.name} imports {name}" for name in names
                          if name.startswith(".") or name.split(".")[0] not in LAZY_OK]
    assert not found, "\n".join(found)


def test_the_checks_see_a_circle():
    """The graph reader finds an import inside a function, a relative import, an absolute one and one made
    for type hints alone."""
    tree = ast.parse("from . import a\nfrom .b import x\nimport posenc_utils.c\ndef f():\n    from posenc_utils import d\n"
                     "if TYPE_CHECKING:\n    from .e import Y\n")
    assert _package_imports(tree) == {"a", "b", "c", "d", "e"}
    assert upward({"cache": {"features"}, "features": {"cache"}}) == ["cache (layer 0) imports features (layer 2)"]
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()


def test_the_specs_import_only_borders_positions_and_the_standard_library():
    """The specs are plain values at the bottom: every layer may import them, and they import nothing above."""
    assert import_graph()["specs"] <= {"borders", "positions"}
    tree = _tree("specs")
    outside = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    outside |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert outside <= set(sys.stdlib_module_names) | {"__future__"}, outside - set(sys.stdlib_module_names)
