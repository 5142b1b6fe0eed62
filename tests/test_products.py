"""Every product of the study is declared once (:mod:`posenc_utils.primitives.products`), every file a run writes belongs to a
declared product, and no product's file name is typed anywhere else in the package or the notebooks."""
from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

from posenc_utils.primitives import paths, products

PACKAGE = Path(__file__).resolve().parents[1] / "posenc_utils"
MODULES = sorted(".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")
                 if p.stem != "__init__")


@pytest.fixture(scope="module")
def registry() -> dict[str, products.Product]:
    for m in MODULES:  # every declaration runs at import
        importlib.import_module(f"posenc_utils.{m}")
    return products.REGISTRY


def test_each_file_belongs_to_one_product(registry):
    files = [f for p in registry.values() for f in p.files()]
    assert len(files) == len(set(files)), sorted({f for f in files if files.count(f) > 1})
    with pytest.raises(ValueError, match="declared twice"):
        products.declare(next(iter(registry)), "02", "csv")


def test_the_declarations_hold_together(registry):
    for p in registry.values():
        assert p.notebook in ("", "01", "02", "03", "04", "05", "06", "07", "08"), p
        assert p.drawn_from is None or (p.drawn_from.name in registry and p.drawn_from.kind in ("table", "csv")), p
        assert p.frame is None or p.claims, f"{p.name}: the claims read it, so it names them"
        assert p.made_by is None or callable(p.made_by), p
    frames = [p.frame for p in registry.values() if p.frame]
    assert len(frames) == len(set(frames))
    from posenc_utils.studies import claims
    assert {t for r in claims.RULES.values() for t in r.tables} <= set(frames), "every table a rule reads is declared"
    sections = {p.readme for p in registry.values() if p.readme}
    readme = (paths.PROJ_ROOT / "README.md").read_text()
    assert all(f"<!-- {s}:start -->" in readme for s in sections), sections


def test_every_file_of_the_committed_run_is_declared(registry):
    out = paths.FIGURES_DIR / "offline"
    files = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()]
    assert files, "the offline products are committed"
    assert [f for f in files if products.owner(f) is None] == []
    for nb in ("01", "02", "03", "04", "05", "06"):
        assert products.missing(out, nb) == [], nb


def _pattern(registry) -> re.Pattern:
    """A product's file name typed in text: its stem with a file suffix, or its per-image or larger-budget file's stem
    (a stem alone is the name of the function that makes it, often)."""
    stems = {p.name for p in registry.values()} | {p.twin.name for p in registry.values() if p.budget}
    names = "|".join(sorted(map(re.escape, stems), key=len, reverse=True))
    return re.compile(rf"\b(?:{names})(?:\.(?:csv|md|png|pdf|json|grid\.npz)\b|\.\{{|_per_image|_budget)")


def _strings(tree: ast.AST, skip: set[int]) -> list[tuple[int, str]]:
    """Every string constant in ``tree`` (f-strings' literal parts and docstrings included) but those at ``skip``."""
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]


def _declared_names(tree: ast.AST) -> set[int]:
    """The name argument of every ``declare(...)`` call: the one place a product's name is typed."""
    return {id(n.args[0]) for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "declare"
            and n.args and isinstance(n.args[0], ast.Constant)}


def test_no_product_file_name_is_typed_outside_its_declaration(registry):
    typed = _pattern(registry)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for line, text in _strings(tree, _declared_names(tree)):
            found += [f"{path.name}:{line}: {m.group(0)}" for m in typed.finditer(text)]
    for nb in sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            source = "".join(cell["source"])
            if cell["cell_type"] == "code":
                code = "\n".join(line for line in source.splitlines() if not line.startswith("%"))
                texts = [t for _, t in _strings(ast.parse(code), set())] + re.findall(r"#.*", code)
            else:
                texts = [source]
            found += [f"{nb.name} cell {i}: {m.group(0)}" for t in texts for m in typed.finditer(t)]
    assert found == [], "type the product (its declaration's constant), not its file name:\n" + "\n".join(found)
