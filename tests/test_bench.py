"""``liponet bench``: the tiny preset end to end, the full preset's wiring on a fake file tree."""

from __future__ import annotations

import csv
import math
import pathlib

import pytest
import torch

from liponet.bench import DEFAULT_MODELS, MODELS, PRESETS, TASKS, load_task, resolve_task, run_bench
from liponet.cli import main
from liponet.data import generate
from liponet.layers import SpectralShortcut

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_tiny_preset_end_to_end(tmp_path: pathlib.Path) -> None:
    code = main(["bench", "--preset", "tiny", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    for suffix in (".csv", ".md", ".png"):
        assert (tmp_path / f"bench_tiny{suffix}").is_file()
    with (tmp_path / "bench_tiny.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == list(DEFAULT_MODELS)
    for r in rows:
        if r["status"] == "not installed":
            assert r["model"] == "neuralop-FNO"
            continue
        assert r["status"] == "ok"
        assert math.isfinite(float(r["nrmse"])) and float(r["nrmse"]) > 0
        assert float(r["max"]) >= float(r["rmse"])
        if r["model"] == "neuralop-FNO":
            assert r["bound_label"] == "no certificate"
            continue
        # the tiny preset's frames are exact samples shifted by 0.4 of a (strided) cell: the map
        # between the samples is no isometry (issue 12, item 1: pair ratios far above 1), so
        # L_G is a data estimate and no bound is labelled certified
        assert r["L_G_label"] == "estimated" and float(r["L_G"]) > 1.05
        assert r["bound_label"] == "estimated"
        assert "not whole cells" in r["L_G_premise"]
        assert float(r["lipschitz_certified"]) > 0
    md = (tmp_path / "bench_tiny.md").read_text()
    assert "published, full-size data" in md
    assert "L_G premise: estimated (exact solution sampled at cell centres" in md


def test_full_preset_resolves_pdebench_files(tmp_path: pathlib.Path) -> None:
    full = PRESETS["full"]
    for spec in TASKS.values():
        (tmp_path / spec.pdebench_file).touch()
    expect = {
        "advection_1d": ("1D_Advection_Sols_beta0.1.hdf5", 4, 5, 10),
        "burgers_1d": ("1D_Burgers_Sols_Nu0.01.hdf5", 4, 5, 10),
        "diffusion_reaction_1d": ("ReacDiff_Nu0.5_Rho1.0.hdf5", 4, 1, 5),
        "darcy_2d": ("2D_DarcyFlow_beta1.0_Train.hdf5", 1, 1, None),
        "diffusion_reaction_2d": ("2D_diff-react_NA_NA.h5", 1, 1, 10),
    }
    for task, (name, sx, st, k) in expect.items():
        path, kw = resolve_task(task, full, tmp_path)
        assert path == tmp_path / name
        assert (kw["reduced_resolution"], kw["reduced_resolution_t"]) == (sx, st)
        assert kw.get("initial_step") == k
        assert kw["task"] == ("coefficient" if task == "darcy_2d" else "autoregressive")
    assert (full.epochs, full.batch, full.lr, full.width, full.modes, full.depth) == (
        500,
        50,
        1e-3,
        20,
        12,
        4,
    )


def test_full_preset_reads_a_pdebench_file_unchanged(tmp_path: pathlib.Path) -> None:
    # a small file under PDEBench's name: 56 frames -> 12 after the time stride 5, 16 -> 4 cells
    generate("advection", tmp_path / "1D_Advection_Sols_beta0.1.hdf5", n_samples=12, nx=16, nt=56)
    data = load_task("advection_1d", PRESETS["full"], tmp_path, tmp_path / "unused")
    assert data.path == tmp_path / "1D_Advection_Sols_beta0.1.hdf5"
    assert data.x_train.shape[1:] == (10, 4) and data.y_train.shape[1:] == (1, 4)
    assert data.traj_test is not None and data.traj_test.shape[1:] == (12, 1, 4)
    assert not (tmp_path / "unused").exists()


def test_full_preset_missing_file_and_missing_data_dir(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"1D_Burgers_Sols_Nu0\.01\.hdf5"):
        resolve_task("burgers_1d", PRESETS["full"], tmp_path)
    with pytest.raises(ValueError, match="--data-dir"):
        run_bench(PRESETS["full"], work_dir=tmp_path)


def test_cli_rejects_unknown_task_and_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--preset", "tiny", "--tasks", "heat"]) == 2
    assert "--tasks: unknown 'heat'" in capsys.readouterr().err
    assert main(["bench", "--preset", "tiny", "--models", "UNet"]) == 2
    assert "--models: unknown 'UNet'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown task"):
        resolve_task("heat", PRESETS["tiny"], None)


def test_missing_neuraloperator_gives_a_not_installed_row(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import liponet.bench as bench

    monkeypatch.setattr(bench, "neuralop_available", lambda: False)
    data = load_task("advection_1d", PRESETS["tiny"], None, tmp_path)
    row = bench.run_row("neuralop-FNO", data, PRESETS["tiny"])
    assert row == {
        "task": "advection_1d",
        "model": "neuralop-FNO",
        "seed": 0,
        "status": "not installed",
    }
    bench.write_results([row], tmp_path, PRESETS["tiny"], {})
    assert "| neuralop-FNO |" in (tmp_path / "bench_tiny.md").read_text()
    assert "not installed" in (tmp_path / "bench_tiny.md").read_text()


def test_a_rebuild_without_a_note_keeps_the_this_run_paragraph(tmp_path: pathlib.Path) -> None:
    import liponet.bench as bench

    row = {"task": "advection_1d", "model": "neuralop-FNO", "seed": 0, "status": "not installed"}
    md = tmp_path / "bench_tiny.md"
    bench.write_results([row], tmp_path, PRESETS["tiny"], {}, note="first line\nsecond line")
    assert "**This run:** first line\nsecond line\n\n" in md.read_text()
    # --append / --from-csv without --note: the paragraph stays
    bench.write_results([row], tmp_path, PRESETS["tiny"], {}, write_csv=False)
    assert md.read_text().count("**This run:** first line\nsecond line\n\n") == 1
    # a new note replaces it
    bench.write_results([row], tmp_path, PRESETS["tiny"], {}, write_csv=False, note="later")
    assert "**This run:** later\n" in md.read_text() and "first line" not in md.read_text()
    # a fresh run (its CSV written) without a note has none
    bench.write_results([row], tmp_path, PRESETS["tiny"], {})
    assert "**This run:**" not in md.read_text()


@pytest.mark.parametrize("initial_step", [1, 2, 3])
def test_rollout_fields_keeps_input_frames_and_rolls_windows(initial_step):
    from liponet.bench import rollout_fields

    gen = torch.Generator().manual_seed(0)
    traj = torch.randn(3, 6, 2, 8, generator=gen)  # (n, frames, C, x)

    def f(w):  # a window (n, k*C, x) -> next frame (n, C, x), depending on every frame
        return 0.5 * w[:, -2:] + w[:, :2]

    frames = list(traj[:, :initial_step].unbind(1))
    for _ in range(traj.shape[1] - initial_step):
        frames.append(f(torch.cat(frames[-initial_step:], 1)))
    torch.testing.assert_close(rollout_fields(f, traj, initial_step), torch.stack(frames, 1))


def test_rows_train_through_the_trainer(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import liponet.bench as bench
    from liponet.train import Trainer

    fits: list[Trainer] = []
    original = Trainer.fit

    def spy(self: Trainer, *args: object, **kwargs: object) -> dict[str, object]:
        fits.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spy)
    tiny = PRESETS["tiny"]
    data = load_task("advection_1d", tiny, None, tmp_path)
    torch.manual_seed(3)
    initial = bench.MODELS["LipFNO"](data, tiny).state_dict()
    row = bench.run_row("LipFNO", data, tiny, seed=3)
    assert len(fits) == 1
    trainer = fits[0]
    # the bench's own instance is the one the Trainer trained (the model= hook)
    assert trainer.model is row["_model"]
    batches = math.ceil(data.x_train.shape[0] / tiny.batch)
    assert trainer.config.epochs == math.ceil(tiny.steps / batches)
    assert row["steps"] == trainer.global_step == trainer.config.epochs * batches
    assert trainer.config.seed == 3 and row["seed"] == 3
    assert 0 < row["train_s"] < 60
    changed = [k for k, v in row["_model"].state_dict().items() if not torch.equal(v, initial[k])]
    assert changed, "training changed no weight"
    # a DeepONet goes through the same Trainer as a field map
    row = bench.run_row("LipDeepONet", data, tiny)
    assert isinstance(fits[-1].model, bench.FieldModel)
    assert row["status"] == "ok" and math.isfinite(row["nrmse"])


def test_local_deeponets_are_field_rows_on_2d_diffusion_reaction(tmp_path: pathlib.Path) -> None:
    import liponet.bench as bench
    from liponet.models import LipLocalDeepONet, LocalDeepONet

    task = "diffusion_reaction_2d"
    tiny = bench.with_overrides(
        PRESETS["tiny"],
        tasks=(task,),
        n_samples=12,
        nx={task: 8},
        nt={task: 5},
        strides={task: (1, 1)},
        initial_step={task: 2},
    )
    data = load_task(task, tiny, None, tmp_path)
    assert data.spatial == (8, 8) and data.in_channels == 4 and data.out_channels == 2
    for name, cls in (("LipLocalDeepONet", LipLocalDeepONet), ("LocalDeepONet", LocalDeepONet)):
        row = bench.run_row(name, data, tiny, seed=1)
        model = row["_model"]
        # a field model (one input): trained as it is, not through the DeepONet wrapper
        assert type(model) is cls and model.grid == (8, 8)
        assert row["status"] == "ok" and math.isfinite(row["nrmse"]) and row["steps"] > 0
        assert row["lipschitz_certified"] == pytest.approx(model.lipschitz_bound())
        assert 0.0 <= row["coverage"] <= 1.0 and row["n_queries"] > 0
        x = data.x_test[:3]
        assert row["_f"](x).shape == data.y_test[:3].shape


def test_train_config_maps_steps_to_epochs_and_halvings() -> None:
    from dataclasses import replace

    from liponet.bench import BenchData, train_config

    x = torch.zeros(100, 2, 8)
    data = BenchData(
        TASKS["advection_1d"], pathlib.Path("x"), 2, x, x[:, :1], x, x[:, :1], x, x[:, :1],
        None, None, 2, 1, (8,), 0.1,
    )  # fmt: skip
    preset = replace(PRESETS["small"], steps=95, batch=10, lr_halvings=4)
    cfg = train_config(data, preset, seed=1, out_dir="unused", device="cpu")
    # 10 batches per epoch: 95 steps -> 10 epochs, halved every 2 epochs
    assert (cfg.epochs, cfg.step_size, cfg.gamma, cfg.batch_size) == (10, 2, 0.5, 10)
    assert (cfg.loss, cfg.grad_clip, cfg.bf16, cfg.scheduler) == ("rel_l2", 0.0, False, "step")
    cfg = train_config(data, replace(preset, lr_halvings=0, scheduler="cosine"), 0, "u", "cpu")
    assert (cfg.gamma, cfg.scheduler) == (1.0, "cosine")


def _fake_row(task: str, model: str, seed: int, nrmse: float, train_s: float) -> dict:
    return {
        "task": task,
        "model": model,
        "seed": seed,
        "status": "ok",
        "nrmse": nrmse,
        "train_s": train_s,
        "lipschitz_certified": 1.0 + seed if model != "FNO" else 50.0,
    }


def test_summary_means_spreads_ratios_and_targets() -> None:
    from liponet.bench import summarize, target_checks

    rows = [
        _fake_row("burgers_1d", "FNO", 0, 0.010, 10.0),
        _fake_row("burgers_1d", "FNO", 1, 0.014, 14.0),
        _fake_row("burgers_1d", "LipFNO", 0, 0.030, 11.0),
        _fake_row("burgers_1d", "LipFNO", 1, 0.034, 13.0),
        _fake_row("burgers_1d", "LipFNO-x", 0, 0.013, 16.0),
        _fake_row("burgers_1d", "LipFNO-x", 1, 0.013, 16.0),
        {"task": "burgers_1d", "model": "LipFNO-x", "seed": 2, "status": "failed"},
    ]
    summary = {s["model"]: s for s in summarize(rows)}
    fno, lip, best = summary["FNO"], summary["LipFNO"], summary["LipFNO-x"]
    assert fno["seeds"] == 2 and best["seeds"] == 2  # the failed row does not count
    assert fno["nrmse_mean"] == pytest.approx(0.012)
    assert fno["nrmse_std"] == pytest.approx(math.sqrt(2 * 0.002**2))
    assert (lip["nrmse_min"], lip["nrmse_max"]) == (0.030, 0.034)
    assert lip["nrmse_ratio"] == pytest.approx(0.032 / 0.012)
    assert best["train_ratio"] == pytest.approx(16.0 / 12.0)
    assert best["lipschitz_max"] == 2.0
    (check,) = target_checks(list(summary.values()))
    assert check["model"] == "LipFNO-x"
    assert check["nrmse_ratio"] == pytest.approx(0.013 / 0.012)
    assert check["nrmse_met"] and check["nrmse_target"] == 1.2
    assert not check["train_met"]  # 1.33 > 1.3


def test_targets_choose_the_fastest_model_that_meets_the_accuracy_target(
    tmp_path: pathlib.Path,
) -> None:
    from liponet.bench import read_step_ratios, summarize, summary_markdown, target_checks

    rows = [
        _fake_row("burgers_1d", "FNO", 0, 0.010, 10.0),
        _fake_row("burgers_1d", "FNO", 1, 0.010, 10.0),
        _fake_row("burgers_1d", "LipFNO-slow", 0, 0.009, 30.0),  # most accurate, slow
        _fake_row("burgers_1d", "LipFNO-slow", 1, 0.009, 30.0),
        _fake_row("burgers_1d", "LipFNO-fast", 0, 0.011, 40.0),  # meets 1.2, fast side by side
        _fake_row("burgers_1d", "LipFNO-fast", 1, 0.011, 40.0),
        _fake_row("burgers_1d", "LipFNO-one", 0, 0.010, 5.0),  # one seed: not eligible
        _fake_row("burgers_1d", "LipFNO-bad", 0, 0.020, 5.0),  # misses the nRMSE target
        _fake_row("burgers_1d", "LipFNO-bad", 1, 0.020, 5.0),
    ]
    step = tmp_path / "medium_step_time.csv"
    step.write_text(
        "task,model,ratio_to_FNO\n"
        "burgers_1d,FNO,1\nburgers_1d,LipFNO-slow,1.9\nburgers_1d,LipFNO-fast,1.25\n"
    )
    ratios = read_step_ratios(step)
    assert ratios[("burgers_1d", "LipFNO-fast")] == 1.25
    (check,) = target_checks(summarize(rows), ratios)
    # the side-by-side ratio (1.25) decides, not the sequential train_s ratio (4.0)
    assert check["model"] == "LipFNO-fast" and check["time_source"] == "step"
    assert check["nrmse_met"] and check["train_met"] and check["train_ratio"] == 1.25
    assert check["best_model"] == "LipFNO-slow" and check["best_time_ratio"] == 1.9
    # without step ratios the sequential ratio is used, and labelled
    (seq,) = target_checks(summarize(rows))
    assert seq["model"] == "LipFNO-slow" and seq["time_source"] == "train_s"
    assert seq["train_ratio"] == pytest.approx(3.0) and not seq["train_met"]
    table = "\n".join(summary_markdown(rows, ratios))
    assert (
        "| burgers_1d | LipFNO-fast | 2 | FNO (2, 0.01) | 1.1 | 1.2 | yes | 1.1 | 1.25 (step) "
        "| yes |" in table
    )
    assert "LipFNO-slow: 0.9x, time 1.9x | LipFNO-fast: 1.1x, time 1.25x |" in table
    # the most accurate model within the time target, beside the most accurate one
    assert check["fast_model"] == "LipFNO-fast" and check["fast_time_ratio"] == 1.25
    # none meets the nRMSE target: the most accurate one shows the miss
    missing = [r for r in rows if r["model"] in ("FNO", "LipFNO-bad")]
    (miss,) = target_checks(summarize(missing), ratios)
    assert miss["model"] == "LipFNO-bad" and not miss["nrmse_met"]
    # LipFNO-bad has no side-by-side step ratio: its train_s ratio (0.5) is within the target
    assert miss["fast_model"] == "LipFNO-bad"
    slow_only = [r for r in rows if r["model"] in ("FNO", "LipFNO-slow")]
    (slow,) = target_checks(summarize(slow_only), ratios)
    assert slow["fast_model"] is None and math.isnan(slow["fast_nrmse_ratio"])
    assert "| none |" in "\n".join(summary_markdown(slow_only, ratios))
    assert read_step_ratios(tmp_path / "absent.csv") == {}
    (tmp_path / "bad.csv").write_text("task,model,ms\nburgers_1d,FNO,3\n")
    with pytest.raises(ValueError, match="ratio_to_FNO"):
        read_step_ratios(tmp_path / "bad.csv")


def test_targets_pick_from_three_seed_lines_over_one_seed_screens() -> None:
    from liponet.bench import TARGET_SEEDS, summarize, target_checks

    rows = [_fake_row("advection_1d", "FNO", s, 0.010, 10.0) for s in range(3)]
    rows += [_fake_row("advection_1d", "LipFNO", s, 0.009, 20.0) for s in range(3)]
    # one-seed screens: a lucky FNO and a lucky LipFNO at another learning rate
    rows += [_fake_row("advection_1d", "FNO-lr", 0, 0.002, 10.0)]
    rows += [_fake_row("advection_1d", "LipFNO-lr", 0, 0.001, 20.0)]
    (check,) = target_checks(summarize(rows))
    assert TARGET_SEEDS == 3
    assert (check["model"], check["fno_model"]) == ("LipFNO", "FNO")
    assert check["nrmse_ratio"] == pytest.approx(0.9) and check["nrmse_met"]
    # ... but the table names the unconfirmed screens that could overturn the verdict
    assert sorted(m for m, _, _ in check["better_screens"]) == ["FNO-lr", "LipFNO-lr"]
    # once the FNO screen has its three seeds it is the reference
    rows += [_fake_row("advection_1d", "FNO-lr", s, 0.002, 10.0) for s in (1, 2)]
    (check,) = target_checks(summarize(rows))
    assert check["fno_model"] == "FNO-lr" and check["fno_seeds"] == 3
    assert check["nrmse_ratio"] == pytest.approx(4.5) and not check["nrmse_met"]
    assert [m for m, _, _ in check["better_screens"]] == ["LipFNO-lr"]


def test_csv_rows_round_trip_and_bad_header(tmp_path: pathlib.Path) -> None:
    from liponet.bench import append_row, done_keys, read_rows

    path = tmp_path / "r.csv"
    append_row(path, _fake_row("burgers_1d", "FNO", 2, 0.5, 1.5))
    append_row(path, {"task": "burgers_1d", "model": "LipFNO", "seed": 0, "status": "failed"})
    rows = read_rows(path)
    assert rows[0]["seed"] == 2 and rows[0]["nrmse"] == 0.5 and rows[0]["model"] == "FNO"
    assert math.isnan(rows[1]["nrmse"])
    assert done_keys(rows) == {("burgers_1d", "FNO", 2)}
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv"):
        append_row(bad, rows[0])
    with pytest.raises(ValueError, match="not a liponet bench CSV"):
        read_rows(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        read_rows(tmp_path / "missing.csv")


def test_cli_append_resumes_and_tables_rebuild_from_csv(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--preset", "tiny", "--out", str(tmp_path), "--quiet", "--append"]
    argv += ["--models", "FNO", "LipFNO", "--seeds", "0", "1"]
    assert main(argv) == 0
    csv_path = tmp_path / "bench_tiny.csv"
    first = csv_path.read_text()
    assert len(first.splitlines()) == 5  # header + 2 models x 2 seeds
    # a second run finds every row done and trains nothing
    assert main([*argv, "--seeds", "0", "1", "2"]) == 0
    rows = csv_path.read_text().splitlines()
    assert rows[:5] == first.splitlines() and len(rows) == 7  # only seed 2 was added
    (tmp_path / "bench_tiny.md").unlink()
    assert main(["bench", "--preset", "tiny", "--out", str(tmp_path), "--from-csv"]) == 0
    md = (tmp_path / "bench_tiny.md").read_text()
    assert "## Summary over seeds" in md and "| advection_1d | LipFNO | 3 |" in md
    assert "most accurate LipFNO" in md
    assert csv_path.read_text().splitlines() == rows  # --from-csv leaves the CSV alone
    capsys.readouterr()
    empty = tmp_path / "empty"
    assert main(["bench", "--preset", "tiny", "--out", str(empty), "--from-csv"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_medium_preset_is_complete_and_per_task_settings_resolve() -> None:
    from liponet.bench import per_task

    medium = PRESETS["medium"]
    assert medium.seeds == (0, 1, 2) and medium.models is not None
    assert set(medium.models) <= set(MODELS) and "FNO" in medium.models
    for task in medium.tasks:
        for setting in (medium.n_samples, medium.steps, medium.modes):
            assert per_task(setting, task) >= 1
        assert task in medium.nx and task in medium.nt and task in medium.strides
    assert per_task(7, "anything") == 7
    small = PRESETS["small"].models
    assert small is not None and set(small) <= set(MODELS)
    assert {"FNO", "LipFNO", "LocalDeepONet", "LipLocalDeepONet"} <= set(small)
    with pytest.raises(ValueError, match="no value for task 'heat'"):
        per_task({"burgers_1d": 3}, "heat")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cli_device_cuda_without_gpu_is_a_one_line_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--preset", "tiny", "--models", "FNO", "--out", str(tmp_path / "out")]
    assert main([*argv, "--device", "cuda", "--quiet"]) == 2
    assert "'cuda' requested but no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_guide_medium_summary_matches_the_committed_csv_cell_by_cell() -> None:
    from readme_figures import table_after, table_mismatches

    from liponet.bench import read_rows, seed_summary_table

    anchor = "**Summary, preset `medium`**"
    readme = (ROOT / "docs" / "guide" / "benchmarks.md").read_text()
    if anchor not in readme:
        pytest.skip("the benchmarks guide has no medium summary")
    rows = read_rows(ROOT / "benchmarks" / "results" / "bench_medium.csv")
    models = [
        "FNO",
        "LipFNO",
        "LipFNO-clip",
        "LipFNO-inc",
        "LipFNO-wide",
        "LipFNO-clip-lr",
        "LipFNO-wide-lr",
    ]
    tuned = ["LipFNO-lr", "FNO-lr", "FNO-lr1e-3", "FNO-lr3e-4", "FNO-lr2e-2"]
    expected = seed_summary_table(rows, [*models, "LipFNO-d2", "LipFNO-inc-d2", *tuned])
    assert table_mismatches(table_after(readme, anchor), expected) == []


def test_lipfno_m8_keeps_eight_modes_and_its_pinned_budget(tmp_path: pathlib.Path) -> None:
    from liponet.bench import fno_builder
    from liponet.layers import ConvexPotentialBlock
    from liponet.models import LipFNO

    tiny = PRESETS["tiny"]  # 4 kept modes
    data = load_task("advection_1d", tiny, None, tmp_path)
    assert data.spatial == (16,)  # resolves modes |k| < 8
    model = MODELS["LipFNO-m8-lr"](data, tiny)
    assert isinstance(model, LipFNO) and model.modes == (8,)
    blocks = [m for m in model.modules() if isinstance(m, ConvexPotentialBlock)]
    assert len(blocks) == tiny.depth and all(b.conv.modes == (8,) for b in blocks)
    assert model.eval().lipschitz_bound() <= 3.0 * (1 + 1e-5)  # its pinned budget k = 3
    # a modes override replaces the preset's, capped at what the grid resolves as those are
    assert fno_builder(modes=2)(data, tiny).modes == (2,)
    assert fno_builder(modes=40)(data, tiny).modes == (8,)


def test_lipfno_wide_doubles_the_convex_potential_features(tmp_path: pathlib.Path) -> None:
    from liponet.layers import ConvexPotentialBlock
    from liponet.models import LipFNO

    tiny = PRESETS["tiny"]
    data = load_task("advection_1d", tiny, None, tmp_path)
    model = MODELS["LipFNO-wide"](data, tiny)
    assert isinstance(model, LipFNO)
    blocks = [m for m in model.modules() if isinstance(m, ConvexPotentialBlock)]
    assert len(blocks) == tiny.depth
    assert all(b.width == tiny.width and b.hidden == 2 * tiny.width for b in blocks)
    assert model.eval().lipschitz_bound() <= 1.3 * (1 + 1e-5)  # its pinned budget k = 1.3


@pytest.mark.parametrize(
    ("name", "width", "factor", "depth"),
    [
        ("LipFNO-wide-w16-d3-lr-cos", 16, 2.0, 3),
        ("LipFNO-wide-w12-lr-cos", 12, 2.0, None),
        ("LipFNO-h30-d3-lr-cos", None, 1.5, 3),
    ],
)
def test_width_for_depth_variants_size_hidden_from_their_own_width(
    tmp_path: pathlib.Path, name: str, width: int | None, factor: float, depth: int | None
) -> None:
    from liponet.layers import ConvexPotentialBlock
    from liponet.models import LipFNO

    tiny = PRESETS["tiny"]  # width 8, depth 2
    width = tiny.width if width is None else width
    data = load_task("advection_1d", tiny, None, tmp_path)
    model = MODELS[name](data, tiny)
    assert isinstance(model, LipFNO)
    blocks = [m for m in model.modules() if isinstance(m, ConvexPotentialBlock)]
    assert len(blocks) == (tiny.depth if depth is None else depth)
    # hidden_factor scales the variant's own width (16 -> 32), not the preset's (8 -> 16)
    assert all(b.width == width and b.hidden == round(factor * width) for b in blocks)
    assert model.eval().lipschitz_bound() <= 1.3 * (1 + 1e-5)  # the pinned budget k = 1.3


def test_model_training_settings_replace_the_presets_for_that_model_only(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from liponet import bench

    tiny = PRESETS["tiny"]
    data = load_task("advection_1d", tiny, None, tmp_path)
    seen: dict[str, float] = {}

    class Stop(Exception):
        pass

    def capture(model, data, preset, seed=0, device="cpu"):
        seen[current] = preset.lr
        raise Stop

    monkeypatch.setattr(bench, "train", capture)
    for current in ("LipFNO-clip", "LipFNO-clip-lr"):
        with pytest.raises(Stop):
            bench.run_row(current, data, tiny)
    assert bench.MODEL_TRAINING["LipFNO-clip-lr"] == bench.MODEL_TRAINING["FNO-lr"] == {"lr": 1e-2}
    assert seen == {"LipFNO-clip": tiny.lr, "LipFNO-clip-lr": 1e-2}
    # same network: only the optimizer's settings differ
    torch.manual_seed(0)
    a = MODELS["LipFNO-clip"](data, tiny).state_dict()
    torch.manual_seed(0)
    b = MODELS["LipFNO-clip-lr"](data, tiny).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tuned_models_are_compared_with_fno_given_the_same_settings() -> None:
    from liponet.bench import reference_model, summarize, target_checks

    def row(model: str, nrmse: float) -> dict[str, object]:
        return {
            "task": "darcy_2d",
            "model": model,
            "seed": 0,
            "status": "ok",
            "nrmse": nrmse,
            "train_s": 10.0,
            "lipschitz_certified": 1.0,
        }

    rows = [
        row("FNO", 0.05),
        row("FNO-lr", 0.04),
        row("LipFNO-clip-lr", 0.048),
        row("LipFNO-wide", 0.0502),
    ]
    assert reference_model("LipFNO-clip-lr") == "FNO-lr"
    assert reference_model("FNO-lr") == reference_model("LipFNO-wide") == "FNO"
    ratios = {s["model"]: s["nrmse_ratio"] for s in summarize(rows)}
    assert ratios["LipFNO-clip-lr"] == pytest.approx(0.048 / 0.04)  # not 0.048 / 0.05
    assert ratios["FNO-lr"] == pytest.approx(0.04 / 0.05)
    # the target compares each family at its best settings: the lowest LipFNO nRMSE against
    # the lowest FNO nRMSE over its learning rates, not the preset's FNO
    (check,) = target_checks(summarize(rows))
    assert (check["model"], check["fno_model"]) == ("LipFNO-clip-lr", "FNO-lr")
    assert check["nrmse_ratio"] == pytest.approx(0.048 / 0.04) and not check["nrmse_met"]
    assert check["same_settings_ratio"] == pytest.approx(0.048 / 0.04)
    # a LipFNO that beats the preset's FNO but not the tuned one misses the target
    (wide,) = target_checks(summarize([r for r in rows if r["model"] != "LipFNO-clip-lr"]))
    assert wide["model"] == "LipFNO-wide" and wide["nrmse_ratio"] == pytest.approx(0.0502 / 0.04)
    assert wide["same_settings_ratio"] == pytest.approx(0.0502 / 0.05) and not wide["nrmse_met"]
    # without its reference FNO a tuned model has no ratio
    alone = {
        s["model"]: s["nrmse_ratio"] for s in summarize([r for r in rows if r["model"] != "FNO-lr"])
    }
    assert math.isnan(alone["LipFNO-clip-lr"])


def test_recipe_suffixes_compose_with_learning_rates_and_keep_the_network() -> None:
    from dataclasses import replace

    from liponet.bench import (
        MODEL_TRAINING,
        network_of,
        recipe,
        reference_model,
        train_config,
        training_preset,
    )

    medium = PRESETS["medium"]
    # the preset's own recipe is unchanged: cosine stepped per epoch, weight decay 1e-4
    assert (medium.scheduler, medium.schedule_unit, medium.weight_decay) == (
        "cosine",
        "epoch",
        1e-4,
    )
    assert MODEL_TRAINING["LipFNO-wide-d2-lr-cos-wd0"] == {
        "lr": 1e-2,
        "scheduler": "cosine",
        "schedule_unit": "step",
        "weight_decay": 0.0,
    }
    assert MODEL_TRAINING["FNO-cos"] == {"scheduler": "cosine", "schedule_unit": "step"}
    assert network_of("LipFNO-wide-d2-lr-cos-wd0") == "LipFNO-wide-d2"
    assert network_of("LipFNO-inc0.3-d2-cos") == "LipFNO-inc0.3-d2"
    assert network_of("FNO-lr3e-4-cos-wd0") == "FNO"
    assert MODELS["LipFNO-m8-lr-cos"] is MODELS["LipFNO-m8"]
    # each is compared with FNO trained with the same settings
    assert reference_model("LipFNO-wide-d2-lr-cos-wd0") == "FNO-lr-cos-wd0"
    assert reference_model("LipFNO-wide-cos") == "FNO-cos"
    assert recipe(training_preset(medium, "LipFNO-lr-cos-wd0")) == "adam lr=0.01 wd=0 cosine/step"
    assert recipe(training_preset(medium, "FNO-lr3e-4-noise")) == (
        "adam lr=0.0003 wd=0.0001 cosine/epoch noise=0.003"
    )

    class Data:  # what train_config reads: the training windows and the task's name
        x_train = torch.zeros(1000, 1)
        task = TASKS["burgers_1d"]

    per_epoch = train_config(Data(), medium, 0, "", "cpu")  # type: ignore[arg-type]
    per_step = train_config(Data(), training_preset(medium, "FNO-cos-wd0"), 0, "", "cpu")  # type: ignore[arg-type]
    assert (per_epoch.schedule_unit, per_epoch.weight_decay, per_epoch.epochs) == (
        "epoch",
        1e-4,
        125,
    )
    assert (per_step.schedule_unit, per_step.weight_decay, per_step.epochs) == ("step", 0.0, 125)
    # a step schedule halving per step: its intervals count optimizer steps, 32 per epoch here
    halving = train_config(
        Data(), replace(medium, scheduler="step", schedule_unit="step"), 0, "", "cpu"
    )  # type: ignore[arg-type]
    assert halving.step_size == 125 * 32 // 5


def test_rows_state_their_recipe_and_older_csv_files_gain_the_column(
    tmp_path: pathlib.Path,
) -> None:
    from liponet.bench import COLUMNS, append_row, markdown_table, read_rows, write_results

    path = tmp_path / "bench_medium.csv"
    old_columns = [c for c in COLUMNS if c != "recipe"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old_columns, restval="")
        writer.writeheader()
        writer.writerow(_fake_row("burgers_1d", "FNO-lr", 0, 0.02, 10.0))
    new = {
        **_fake_row("burgers_1d", "FNO-cos-wd0", 0, 0.01, 10.0),
        "recipe": "adam lr=0.003 wd=0 cosine/step",
    }
    before = path.read_text().splitlines()[1]
    append_row(path, new)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)  # the header gained the column
    rows = read_rows(path)
    assert [(r["model"], r["nrmse"], r["recipe"]) for r in rows] == [
        ("FNO-lr", 0.02, ""),
        ("FNO-cos-wd0", 0.01, "adam lr=0.003 wd=0 cosine/step"),
    ]
    # a line of the older header under today's (e.g. merged from another branch) reads too
    with path.open("a") as fh:
        fh.write("burgers_1d,FNO,1,ok,,10,,0.03\n")
    rows = read_rows(path)
    assert rows[-1]["recipe"] == "" and rows[-1]["nrmse"] == 0.03
    write_results(rows, tmp_path, PRESETS["medium"], {}, write_csv=False)
    md = (tmp_path / "bench_medium.md").read_text()
    # the rows written before the column: their model's settings at the preset's
    assert "| FNO-lr | 0 | adam lr=0.01 wd=0.0001 cosine/epoch | " in md
    assert "| FNO-cos-wd0 | 0 | adam lr=0.003 wd=0 cosine/step | " in md
    # only the header line changed: the older rows' lines are as they were
    assert path.read_text().splitlines()[1] == before
    # a header that is no prefix of today's: every line rewritten in today's columns
    older = tmp_path / "older.csv"
    older.write_text("task,model,seed,status,nrmse\nburgers_1d,FNO,1,ok,0.04\n")
    append_row(older, new)
    assert older.read_text().splitlines()[1].startswith("burgers_1d,FNO,1,ok,,,,0.04,")
    assert [(r["model"], r["seed"], r["nrmse"]) for r in read_rows(older)] == [
        ("FNO", 1, 0.04),
        ("FNO-cos-wd0", 0, 0.01),
    ]
    lines = markdown_table([], "burgers_1d")
    header, published = lines[0].split(" | "), lines[-1].split(" | ")
    assert published[header.index("nrmse")] == "0.0078"  # PDEBench's figure in its column


def test_a_recipe_variant_without_its_fno_takes_its_networks_time() -> None:
    from liponet.bench import summarize, target_checks

    def row(model: str, seed: int, nrmse: float, train_s: float) -> dict[str, object]:
        return {
            **_fake_row("advection_1d", model, seed, nrmse, train_s),
            "lipschitz_certified": 1.0,
        }

    rows = [row(m, s, v, t) for s in range(3) for m, v, t in (
        ("FNO", 0.010, 10.0), ("LipFNO-d2", 0.012, 12.0), ("LipFNO-d2-cos-wd0", 0.009, 12.5)
    )]  # fmt: skip
    (check,) = target_checks(summarize(rows))
    # no FNO-cos-wd0 line: the time is LipFNO-d2's train_s ratio to FNO, not n/a
    assert check["model"] == "LipFNO-d2-cos-wd0" and check["nrmse_met"]
    assert check["train_ratio"] == pytest.approx(1.2) and check["time_source"] == "train_s"


@pytest.mark.parametrize("name", ["LipFNO-sc-inc-d2-lsfz", "FNO-sc-ls"])
def test_shortcut_init_fits_and_freezes(tmp_path: pathlib.Path, name: str) -> None:
    import liponet.bench as bench
    from liponet.layers import SpectralShortcut

    tiny = bench.with_overrides(PRESETS["tiny"], steps=6)
    data = load_task("advection_1d", tiny, None, tmp_path)
    torch.manual_seed(0)
    model = bench.MODELS[name](data, tiny)
    shortcut = next(m for m in model.modules() if isinstance(m, SpectralShortcut))
    fitted = shortcut.weight.detach().clone()
    expected = SpectralShortcut(shortcut.in_channels, 1, shortcut.size, s=shortcut.s)
    expected.fit_(data.x_train, data.y_train)
    torch.testing.assert_close(fitted, expected.weight.detach(), rtol=0, atol=0)
    row = bench.run_row(name, data, tiny)
    trained = next(m for m in row["_model"].modules() if isinstance(m, SpectralShortcut))
    if name.endswith("lsfz"):  # frozen: training leaves S where the fit put it
        torch.testing.assert_close(trained.weight.detach(), fitted, rtol=0, atol=0)
        assert row["lipschitz_certified"] <= 1.0 + row["_model"].net.inner.lipschitz_bound()
    else:  # trained on from the fit
        assert not torch.equal(trained.weight.detach(), fitted)
    with pytest.raises(ValueError, match="one spectral shortcut"):
        bench.init_shortcut(bench.MODELS["FNO"](data, tiny), data, shortcut_init="lstsq")
    with pytest.raises(ValueError, match="shortcut_init='svd'"):
        bench.init_shortcut(model, data, shortcut_init="svd")


def test_k_auto_residual_is_the_fitted_shortcuts_residual_constant(tmp_path: pathlib.Path) -> None:
    import liponet.bench as bench
    from liponet.train.constraint import AUTO_MARGIN, data_constant

    tiny = PRESETS["tiny"]
    data = load_task("advection_1d", tiny, None, tmp_path)
    model = bench.MODELS["LipFNO-sc-kres-d2-lsfz"](data, tiny).eval()
    residual = bench._shortcut_residual(data, "lstsq")
    shortcut = model.net.shortcut
    torch.testing.assert_close(data.y_train - shortcut(data.x_train), residual, rtol=0, atol=1e-5)
    k = AUTO_MARGIN * data_constant(torch.utils.data.TensorDataset(data.x_train, residual)).value
    increments = data_constant(
        torch.utils.data.TensorDataset(data.x_train, data.y_train), increment_channels=1
    )
    assert k < AUTO_MARGIN * increments.value  # S carries the step: f has less left to fit
    assert model.net.inner.lipschitz_bound() <= k * (1 + 1e-6)
    assert model.lipschitz_bound() <= shortcut.lipschitz_bound() + k * (1 + 1e-6)
    with pytest.raises(ValueError, match="needs shortcut_init \\(one of lstsq, lstsq-rel"):
        bench.lipfno_builder(k="auto-residual", increment="spectral", depth=2)(data, tiny)


def test_rollout_fitted_rows_share_the_fit_and_keep_the_ball(tmp_path: pathlib.Path) -> None:
    import liponet.bench as bench
    from liponet.train.shortcut_fit import rollout_multipliers

    tiny = PRESETS["tiny"]
    data = load_task("advection_1d", tiny, None, tmp_path)
    free = rollout_multipliers(data.x_train, data.y_train, data.spatial[-1])
    norm = float(torch.linalg.matrix_norm(free, ord=2).max())
    fno = bench.MODELS["FNO-sc-rofz-g"](data, tiny)
    auto = bench.MODELS["LipFNO-sc-kres-d2-roafz-g"](data, tiny)
    unit = bench.MODELS["LipFNO-sc-kres-d2-rofz-g"](data, tiny)
    expected = SpectralShortcut(data.in_channels, 1, data.spatial[-1], s=None).assign_(free)
    assert torch.equal(fno.net.shortcut.weight, expected.weight)  # FNO's twin: the fit as it is
    assert auto.net.shortcut.s == pytest.approx(max(1.0, norm), rel=1e-5)
    assert not auto.net.shortcut.weight.requires_grad and not fno.net.shortcut.weight.requires_grad
    assert unit.net.shortcut.lipschitz_bound() <= 1.0
    if norm > 1.0:
        assert unit.lipschitz_bound() < auto.lipschitz_bound()


def test_relative_fit_minimizes_the_relative_error(tmp_path: pathlib.Path) -> None:
    import liponet.bench as bench

    data = load_task("advection_1d", PRESETS["tiny"], None, tmp_path)
    x, y = data.x_train.double(), data.y_train.double()
    w = y.flatten(1).norm(dim=1)

    def errors(how: str) -> tuple[float, float]:
        with torch.no_grad():
            fit = bench.fitted_shortcut(data, how, s=None)  # no ball: the exact minimizers
            r = (fit.double().eval()(x) - y).flatten(1).norm(dim=1)
        return float(r.pow(2).sum()), float((r / w).pow(2).sum())

    (plain_abs, plain_rel), (rel_abs, rel_rel) = errors("lstsq"), errors("lstsq-rel")
    assert plain_abs <= rel_abs * (1 + 1e-6) and rel_rel <= plain_rel * (1 + 1e-6)
    assert rel_rel < plain_rel * (1 - 1e-4)  # the weights change the fit
    with pytest.raises(ValueError, match="shortcut_init='qr'"):
        bench.fitted_shortcut(data, "qr")


def test_unroll_suffixes_for_both_families_and_their_recipe() -> None:
    from liponet.bench import (
        MODEL_TRAINING,
        UNROLL_BASES,
        network_of,
        recipe,
        train_config,
        training_preset,
    )

    medium = PRESETS["medium"]
    for base in ("FNO-cos", "LipFNO-w12-h36-d3-lr-cos"):
        assert base in UNROLL_BASES
        for suffix, k, gradient in (("-ur2", 2, "all"), ("-ur4pf", 4, "last")):
            name = base + suffix
            assert MODEL_TRAINING[name] == {
                **MODEL_TRAINING[base], "unroll": k,
                **({"unroll_gradient": "last"} if gradient == "last" else {}),
            }  # fmt: skip
            assert MODELS[name] is MODELS[network_of(base)]
    assert network_of("LipFNO-w12-h36-d3-lr-cos-ur4pf") == "LipFNO-w12-h36-d3"
    assert recipe(training_preset(medium, "FNO-cos-ur4")) == (
        "adam lr=0.003 wd=0.0001 cosine/step unroll=4"
    )
    assert recipe(training_preset(medium, "FNO-cos-ur2pf")).endswith(" unroll=2/last")
    assert not any(name.endswith("-ur2") for name in DEFAULT_MODELS)

    class Data:  # 10 trajectories of 12 frames, 4 input frames: 8 one-step windows each
        x_train = torch.zeros(80, 4, 8)
        traj_test = torch.zeros(2, 12, 1, 8)
        initial_step = 4
        task = TASKS["burgers_1d"]

    cfg = train_config(Data(), training_preset(medium, "FNO-cos-ur4pf"), 0, "", "cpu")  # type: ignore[arg-type]
    # 10 * (8 - 3) = 50 windows with 4 frames after them: 2 batches of 32 per epoch
    assert (cfg.unroll, cfg.unroll_gradient, cfg.epochs) == (4, "last", 2000)


def test_unrolled_rows_read_k_frame_windows_and_train(tmp_path: pathlib.Path) -> None:
    import liponet.bench as bench

    tiny = bench.with_overrides(PRESETS["tiny"], steps=4)
    data = load_task("advection_1d", tiny, None, tmp_path)
    per = data.traj_test.shape[1] - data.initial_step  # one-step windows per trajectory
    x, y = bench.training_windows(data, bench.with_overrides(tiny, unroll=3))
    n_traj = data.x_train.shape[0] // per
    assert x.shape[0] == n_traj * (per - 2) and y.shape[1] == 3 * data.y_train.shape[1]
    for i, (j, start) in enumerate((a, s) for a in range(n_traj) for s in range(per - 2)):
        if i % 3:
            continue
        one = j * per + start  # the same window among the one-step windows
        torch.testing.assert_close(x[i], data.x_train[one], rtol=0, atol=0)
        for f in range(3):  # frame f after it: the target of the window f steps later
            torch.testing.assert_close(y[i, f : f + 1], data.y_train[one + f], rtol=0, atol=0)
    row = bench.run_row("FNO-cos-ur2pf", data, tiny)
    assert row["status"] == "ok" and row["recipe"].endswith("unroll=2/last")
    with pytest.raises(ValueError, match="unroll: 2 needs an autoregressive task"):
        bench.training_windows(
            bench.BenchData(**{**data.__dict__, "traj_test": None}),
            bench.with_overrides(tiny, unroll=2),
        )


def test_an_unrolled_best_fno_sets_the_time_it_is_judged_by() -> None:
    from liponet.bench import summarize, target_checks

    def row(model: str, seed: int, nrmse: float, train_s: float) -> dict[str, object]:
        return {**_fake_row("burgers_1d", model, seed, nrmse, train_s), "lipschitz_certified": 1.3}

    rows = [row(m, s, v, t) for s in range(3) for m, v, t in (
        ("FNO", 0.020, 10.0), ("FNO-cos", 0.018, 10.0), ("FNO-cos-ur4", 0.014, 40.0),
        ("LipFNO-w12-h36-d3-lr-cos", 0.021, 12.0), ("LipFNO-w12-h36-d3-lr-cos-ur4", 0.016, 50.0),
    )]  # fmt: skip
    steps = {("burgers_1d", "FNO"): 1.0, ("burgers_1d", "LipFNO-w12-h36-d3"): 1.2}
    (check,) = target_checks(summarize(rows), steps)
    assert check["fno_model"] == "FNO-cos-ur4"
    # the unrolled LipFNO's time is its own (train_s 5x FNO's), never its network's step 1.2,
    # and it is judged against the unrolled FNO's 4x: 1.25
    assert check["model"] == "LipFNO-w12-h36-d3-lr-cos-ur4"
    assert check["train_ratio"] == pytest.approx(5.0 / 4.0)
    assert check["time_source"] == "train_s"
    # the one-step LipFNO takes 1.2 / 4 of the unrolled FNO's time
    assert check["fast_model"] == "LipFNO-w12-h36-d3-lr-cos-ur4"
    steps[("burgers_1d", "FNO-cos-ur4")] = 3.0  # a measured step of the unrolled FNO
    steps[("burgers_1d", "LipFNO-w12-h36-d3-lr-cos-ur4")] = 3.9
    (check,) = target_checks(summarize(rows), steps)
    assert check["train_ratio"] == pytest.approx(1.3) and check["time_source"] == "step"
