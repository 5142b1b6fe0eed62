"""The README's example for probing one's own network runs as written."""
import re

from posenc_utils.primitives import paths


def _example() -> str:
    text = (paths.PROJ_ROOT / "README.md").read_text()
    section = text.split("## Probe your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_probe_example_runs(capsys):
    code = _example()
    assert 'get_profile("quick")' in code  # stays CI-sized
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    # one printed row per test set x pattern of the quick profile (4 x 5), plus the header
    assert printed.count("\n") >= 21
    assert "photos" in printed and "spc" in printed


def test_readme_has_generated_sections_markers():
    text = (paths.PROJ_ROOT / "README.md").read_text()
    for name in ("headline", "padding", "layers", "deviations", "benchmark", "card"):
        assert f"<!-- {name}:start -->" in text and f"<!-- {name}:end -->" in text


def test_readme_family_example_is_the_registry_entry():
    """The worked example of a new encoder family is the timm entry exactly as families.py declares it."""
    text = (paths.PROJ_ROOT / "README.md").read_text()
    section = text.split("### A new encoder family", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'Family("timm:"' in example
    assert example.strip() in (paths.PROJ_ROOT / "posenc_utils" / "models" / "families.py").read_text()
