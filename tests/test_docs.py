"""The documentation: the tutorial runs, every public name carries a runnable example."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Subpackages whose ``__all__`` is the public API (one list per subpackage, in its __init__).
PUBLIC = [
    "liponet.functional",
    "liponet.layers",
    "liponet.models",
    "liponet.certify",
    "liponet.data",
    "liponet.metrics",
    "liponet.physics",
    "liponet.train",
    "liponet.interop",
    "liponet.export",
]


def code_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_tutorial_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = code_blocks(DOCS / "tutorial.md")
    assert len(blocks) >= 4
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/tutorial.md[block {i}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "<= Lipschitz constant <=" in out and "certified" in out


def test_well_page_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(code_blocks(DOCS / "well.md")):
        exec(compile(block, f"docs/well.md[block {i}]", "exec"), namespace)
    assert namespace["train"].periodic == (True, True)


def public_callables():
    for name in PUBLIC:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{name}.{attr}", obj


def test_every_public_name_has_an_example():
    """Every public function and class (exceptions aside: the functions raising them show
    them) has an ``Examples`` section, which the doctest run executes."""
    missing = [
        name
        for name, obj in public_callables()
        if ">>>" not in (inspect.getdoc(obj) or "")
        and not (inspect.isclass(obj) and issubclass(obj, BaseException))
    ]
    assert not missing, f"public names without a docstring example: {missing}"


@pytest.mark.parametrize("page", sorted(p.name for p in (DOCS / "reference").glob("*.md")))
def test_reference_pages_cover_the_public_packages(page):
    text = (DOCS / "reference" / page).read_text()
    assert f"::: liponet.{page[:-3]}" in text
