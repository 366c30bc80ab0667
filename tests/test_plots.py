"""The library's own figures place their legends without ``loc="best"``.

``loc="best"`` searches the plotted data and warns ("Creating legend with loc='best' can be slow")
when the search takes over a second, as on a loaded machine; under ``-W error`` (and this suite's
``filterwarnings = error``) that warning failed ``liponet bench`` once. The search is made to
raise here, so a figure that still asks for it fails every time, not only under load.
"""

from __future__ import annotations

import pathlib
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("matplotlib")
from matplotlib.legend import Legend

from liponet import bench
from liponet.cli import certify


@pytest.fixture
def no_best_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Legend, *args: object, **kwargs: object) -> None:
        raise AssertionError('legend placed with loc="best"')

    monkeypatch.setattr(Legend, "_find_best_position", refuse)


def test_the_search_refusal_catches_a_best_legend(
    no_best_search: None, tmp_path: pathlib.Path
) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    ax.legend()
    with pytest.raises(AssertionError, match="best"):
        fig.savefig(tmp_path / "best.png")
    plt.close(fig)


def test_bench_figure_has_a_fixed_legend(no_best_search: None, tmp_path: pathlib.Path) -> None:
    rows = [
        {"status": "ok", "model": m, "task": t, "nrmse": 0.1 + i, "lipschitz_certified": 1.0,
         "train_s": 2.0}
        for i, m in enumerate(("LipFNO", "FNO")) for t in ("advection", "burgers")
    ]  # fmt: skip
    path = bench._plot(rows, ["advection", "burgers"], tmp_path / "bench.png")
    assert path is not None and path.stat().st_size > 0


def test_certify_figure_has_a_fixed_legend(no_best_search: None, tmp_path: pathlib.Path) -> None:
    observed = torch.tensor([0.1, 0.2, 0.3])
    bound = SimpleNamespace(bound=observed * 2, name="pairwise", label="certified")
    other = SimpleNamespace(bound=observed * 3, name="global", label="certified")
    certify._plot(bound, observed, [other], tmp_path / "certify.png")
    assert (tmp_path / "certify.png").stat().st_size > 0


@pytest.fixture
def untightenable(monkeypatch: pytest.MonkeyPatch) -> None:
    """``tight_layout`` warns as matplotlib does when decorations leave no room."""
    import warnings

    from matplotlib.figure import Figure

    def warn(self: Figure, *args: object, **kwargs: object) -> None:
        warnings.warn("Tight layout not applied. tight_layout cannot make axes width small",
                      UserWarning, stacklevel=2)  # fmt: skip

    monkeypatch.setattr(Figure, "tight_layout", warn)


def test_a_layout_that_cannot_be_tightened_does_not_fail_the_figures(
    untightenable: None, tmp_path: pathlib.Path
) -> None:
    # this suite turns warnings into errors, as a caller running with -W error would
    rows = [{"status": "ok", "model": "LipFNO", "task": "advection", "nrmse": 0.1,
             "lipschitz_certified": 1.0, "train_s": 2.0}]  # fmt: skip
    assert bench._plot(rows, ["advection"], tmp_path / "bench.png") is not None
    observed = torch.tensor([0.1, 0.2])
    bound = SimpleNamespace(bound=observed * 2, name="pairwise", label="certified")
    certify._plot(bound, observed, [], tmp_path / "certify.png")
    assert (tmp_path / "certify.png").exists()


def test_bench_figure_grows_with_the_models(no_best_search: None, tmp_path: pathlib.Path) -> None:
    """Presets run over a hundred models (``tiny``): one row each, not one legend entry each."""
    from matplotlib.image import imread

    def height(n_models: int) -> int:
        rows = [{"status": "ok", "model": f"m{i}", "task": "advection", "nrmse": 0.1,
                 "lipschitz_certified": 1.0, "train_s": 1.0} for i in range(n_models)]  # fmt: skip
        path = bench._plot(rows, ["advection"], tmp_path / f"bench{n_models}.png")
        assert path is not None
        return int(imread(path).shape[0])

    assert height(120) > 4 * height(3)


def test_every_legend_names_its_place() -> None:
    """matplotlib warns about a slow ``"best"`` search only when ``loc`` was left to its default.

    Benchmark scripts may ask for ``loc="best"`` explicitly (the same figure, no warning); a
    ``legend()`` call without ``loc`` anywhere in the library or the benchmarks fails here.
    """
    import ast

    root = pathlib.Path(__file__).resolve().parents[1]
    missing = []
    for path in sorted([*root.glob("liponet/**/*.py"), *root.glob("benchmarks/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "legend"
                and not any(k.arg == "loc" for k in node.keywords)
            ):
                missing.append(f"{path.relative_to(root)}:{node.lineno}")
    assert missing == []
