"""The package's imports run one way: one folder per layer, no circle (``if TYPE_CHECKING:`` imports included), no
arrow from a lower layer to a higher one, and no import inside a function except of an optional heavy library. Read
from the source with ``ast``."""
from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "posenc_utils"

# The layers, bottom up, one subpackage each: a module may import from its own layer or a lower one. A new module
# goes into the lowest layer whose modules it needs. The package's own top level (its __init__ and the short names
# of the commands, `python -m posenc_utils.pipeline` ...) stands above them all.
LAYERS = (
    "primitives",  # no import from the package, or only from each other
    "models",  # the networks, notebook 05's network core, the families, the settings that name them, the builder
    "engine",  # images, features, their measures and readouts, tables and plots of them
    "studies",  # the paper's experiments, one module per notebook, the claims' rules, the budget checks
    "reporting",  # what reads the studies' products: figures, report, README sections, benchmark, comparison
    "runners",  # running the study: plan, pipeline, probe, manifest
)
TOP = "top"
# Libraries a function may import when it needs them: optional, or heavy and needed by few calls.
LAZY_OK = {"seaborn", "papermill", "jupyter_client", "jupyter_core", "nbconvert", "IPython", "timm", "h5py", "matplotlib",
           "xxhash", "torchvision", "efficientnet_lite_pytorch", "safetensors"}


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name under the package (``studies.claims``; the top level's
    ``pipeline``)."""
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).with_suffix("")
        out[".".join(rel.parts)] = p
    return out


def layer_of(module: str) -> str:
    return module.split(".")[0] if "." in module else TOP


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _resolve(module: str, node: ast.ImportFrom | ast.Import, known: set[str]) -> set[str]:
    """The package modules one import statement of ``module`` names (dotted under the package)."""
    if isinstance(node, ast.Import):
        return {a.name.removeprefix("posenc_utils.") for a in node.names if a.name.startswith("posenc_utils.")}
    if node.level:
        parts = module.split(".")[:-1]  # the module's package
        base = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
        if node.level - 1 > len(parts):
            return {"<outside the package>"}
        stem = ".".join([*base, *(node.module.split(".") if node.module else [])])
    elif (node.module or "").startswith("posenc_utils"):
        stem = node.module.removeprefix("posenc_utils").removeprefix(".")
    else:
        return set()
    out = set()
    for a in node.names:
        sub = f"{stem}.{a.name}" if stem else a.name
        out.add(sub if sub in known else stem)
    return {m for m in out if m}


def _package_imports(module: str, node: ast.AST, known: set[str]) -> set[str]:
    """The package modules a statement (and everything under it) imports."""
    return set().union(*[_resolve(module, n, known) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))])


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (``if TYPE_CHECKING:`` blocks included: a circle through type hints
    is a circle). A subpackage's ``__init__`` counts as the subpackage."""
    mods = modules()
    known = {m.removesuffix(".__init__") for m in mods}
    return {m.removesuffix(".__init__"): _package_imports(m, ast.parse(p.read_text()), known) - {m.removesuffix(".__init__")}
            for m, p in mods.items()}


def test_every_module_is_in_a_layer_folder():
    loose = [m for m in modules() if layer_of(m) == TOP and m != "__init__"]
    shims = [m for m in loose if len(ast.parse((PACKAGE / f"{m}.py").read_text()).body) > 4]
    assert not shims, f"a module at the package's top level is only a command's short name (a few lines): {shims}"
    assert {layer_of(m) for m in modules()} <= {*LAYERS, TOP}, "put each folder in LAYERS"
    assert all((PACKAGE / layer / "__init__.py").exists() for layer in LAYERS)


def test_no_import_circle():
    graph = import_graph()
    try:
        graphlib.TopologicalSorter({m: {d for d in deps if d in graph} for m, deps in graph.items()}).prepare()
    except graphlib.CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def upward(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """The imports of ``graph`` from a lower layer to a higher one."""
    level = {layer: i for i, layer in enumerate((*layers, TOP))}
    return [f"{m} ({layer_of(m)}) imports {d} ({layer_of(d)})"
            for m, deps in graph.items() for d in sorted(deps) if level.get(layer_of(d), -1) > level[layer_of(m)]
            and m not in LAYERS]


def test_no_import_from_a_lower_layer_to_a_higher_one():
    found = upward(import_graph())
    assert not found, "\n".join(found)


def test_no_import_inside_a_function_but_optional_heavy_libraries():
    found = []
    for m, p in modules().items():
        for fn in ast.walk(ast.parse(p.read_text())):
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
    """The graph reader finds a relative import (of a module and from a package), one from a layer above, an absolute
    one, one inside a function and one made for type hints alone."""
    known = {"studies.a", "studies.b", "engine.c", "engine.d", "engine.e", "primitives.f"}
    tree = ast.parse("from . import a\nfrom .b import x\nimport posenc_utils.engine.c\nfrom ..primitives import f\n"
                     "def g():\n    from posenc_utils.engine import d\nif TYPE_CHECKING:\n    from ..engine.e import Y\n")
    assert _package_imports("studies.z", tree, known) == {"studies.a", "studies.b", "engine.c", "engine.d", "engine.e",
                                                         "primitives.f"}
    assert upward({"primitives.cache": {"engine.features"}}) == ["primitives.cache (primitives) imports engine.features (engine)"]
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()


def test_the_specs_import_only_borders_positions_and_the_standard_library():
    """The specs are plain values at the bottom: every layer may import them, and they import nothing above."""
    assert import_graph()["primitives.specs"] <= {"primitives.borders", "primitives.positions"}
    tree = ast.parse((PACKAGE / "primitives" / "specs.py").read_text())
    outside = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    outside |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert outside <= set(sys.stdlib_module_names) | {"__future__"}, outside - set(sys.stdlib_module_names)
