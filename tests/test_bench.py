"""The benchmark's contract (rows, targets), its runner and command line on fake rows, the Pareto front
against a brute-force definition, and one end-to-end run of the real ``compression`` suite."""

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmtutor.bench import SUITES, TARGETS, Row, accuracy_drop_points, check_target, describe_target
from mmtutor.bench.__main__ import main
from mmtutor.bench.report import (ROW_KEYS, format_row, format_table, load_results, meta_path, pareto_front,
                                  plot_pareto, resolve_rows, results_frame, run_suite, write_results)

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
INT8 = "int8 post-training (fusion model)"
PRUNING = "structured pruning (fusion model)"
DISTILLATION = "distillation (fusion model)"
PIPELINE = "deep compression pipeline (fusion model)"
MINILM = "all-MiniLM-L6-v2 int8"
TFLITE = "TFLite full-integer (fusion model, Keras)"


def make_row(name=INT8, baseline_bytes=2_000_000, size=500_000, baseline=0.99125, value=0.99, latency=None, **extra):
    return Row(name=name, model="test model", baseline_bytes=baseline_bytes, bytes=size, metric="accuracy",
               baseline_metric_value=baseline, metric_value=value, latency_ratio=latency, extra=extra)


# --------------------------------------------------------------------------------------------------
# Row and targets
# --------------------------------------------------------------------------------------------------

def test_every_suite_row_has_a_target_and_every_target_is_described():
    assert len(SUITES["compression"]) == len(TARGETS) == 6
    for target in TARGETS.values():
        words = describe_target(target)
        assert words and "{" not in words
    assert describe_target(TARGETS[INT8]) == "size >= 3.9x, accuracy drop <= 0.5 pt"
    assert describe_target(TARGETS[DISTILLATION]) == ("parameters <= 10% of teacher, "
                                                     "retains >= 99% of the baseline metric")


def test_as_dict_has_the_issue_keys_and_is_json_with_numpy_numbers():
    row = Row(name=INT8, model="m", baseline_bytes=np.int64(2_263_000), bytes=np.int64(570_000),
              metric="accuracy", baseline_metric_value=np.float32(0.99125), metric_value=np.float64(0.99),
              latency_ratio=np.float64(1.5), threads=np.int64(1), batch_size=800, extra={"note": "x"})
    data = row.as_dict()
    assert set(ROW_KEYS) <= set(data) and data["note"] == "x"
    assert data["size_ratio"] == pytest.approx(2_263_000 / 570_000)
    assert data["target"] == describe_target(TARGETS[INT8]) and data["target_met"] is True
    assert json.loads(json.dumps(data)) == data                         # plain Python numbers only
    assert type(data["bytes"]) is int and type(data["metric_value"]) is float


def test_rows_without_a_target_say_so():
    data = make_row(name="an experiment of a notebook").as_dict()
    assert data["target"] is None and data["target_met"] is None


@pytest.mark.parametrize("name, kwargs, met", [
    # size ratio and accuracy drop: exactly 3.9x and exactly 0.5 pt are enough; a hair less is not
    (INT8, dict(baseline_bytes=3_900_000, size=1_000_000, baseline=0.99125, value=0.98625), True),
    (INT8, dict(baseline_bytes=3_899_999, size=1_000_000, baseline=0.99125, value=0.99125), False),
    (INT8, dict(baseline_bytes=4_000_000, size=1_000_000, baseline=0.99125, value=0.98500), False),
    (TFLITE, dict(baseline_bytes=4_000_000, size=1_000_000, baseline=0.98, value=0.9825), True),
    # latency: a missing ratio misses the target
    (PRUNING, dict(latency=2.0, baseline=0.99125, value=0.98125), True),
    (PRUNING, dict(latency=1.99, baseline=0.99125, value=0.99125), False),
    (PRUNING, dict(latency=None, baseline=0.99125, value=0.99125), False),
    (PRUNING, dict(latency=3.0, baseline=0.99125, value=0.98), False),
    (PIPELINE, dict(baseline_bytes=5_000_000, size=100_000, baseline=0.99, value=0.98), True),
    (PIPELINE, dict(baseline_bytes=4_999_999, size=100_000, baseline=0.99, value=0.99), False),
    # absolute metric, size and latency together
    (MINILM, dict(baseline_bytes=350, size=100, baseline=1.0, value=0.99, latency=1.8), True),
    (MINILM, dict(baseline_bytes=350, size=100, baseline=1.0, value=0.9899, latency=1.8), False),
    (MINILM, dict(baseline_bytes=349, size=100, baseline=1.0, value=0.999, latency=1.8), False),
    (MINILM, dict(baseline_bytes=350, size=100, baseline=1.0, value=0.999, latency=1.79), False),
])
def test_check_target_met_and_missed(name, kwargs, met):
    row = make_row(name=name, **kwargs)
    assert check_target(row) is met
    assert row.as_dict()["target_met"] is met


@pytest.mark.parametrize("student, value, met", [
    (56_385, 0.99125 * 0.99, True),        # exactly 10% of the parameters, exactly 99% of the accuracy
    (56_386, 0.99125, False),              # one parameter too many
    (20_000, 0.99125 * 0.99 - 1e-6, False),
])
def test_check_target_of_distillation_reads_parameter_counts(student, value, met):
    row = make_row(name=DISTILLATION, value=value, teacher_parameters=563_850, student_parameters=student)
    assert check_target(row) is met


def test_accuracy_drop_points():
    assert accuracy_drop_points(make_row(baseline=0.99125, value=0.99)) == pytest.approx(0.125)
    assert accuracy_drop_points(make_row(baseline=0.98, value=0.99)) == pytest.approx(-1.0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(size=0), ValueError, "bytes"),
    (dict(baseline_bytes=-3), ValueError, "baseline_bytes"),
    (dict(size=1.5), TypeError, "bytes"),
    (dict(size=True), TypeError, "bytes"),
    (dict(value=float("nan")), ValueError, "metric_value"),
    (dict(baseline="0.9"), TypeError, "baseline_metric_value"),
    (dict(latency=float("inf")), ValueError, "latency_ratio"),
    (dict(seconds=3.0), ValueError, "extra"),
    (dict(size_ratio=3.0), ValueError, "extra"),
])
def test_row_refuses_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_row(**kwargs)


def test_row_refuses_bad_names_threads_and_extra():
    with pytest.raises(TypeError, match="Row.name"):
        Row(name="", model="m", baseline_bytes=1, bytes=1, metric="accuracy", baseline_metric_value=1,
            metric_value=1)
    with pytest.raises(ValueError, match="Row.threads"):
        Row(name=INT8, model="m", baseline_bytes=1, bytes=1, metric="accuracy", baseline_metric_value=1,
            metric_value=1, threads=0)
    with pytest.raises(TypeError, match="Row.extra"):
        Row(name=INT8, model="m", baseline_bytes=1, bytes=1, metric="accuracy", baseline_metric_value=1,
            metric_value=1, extra=[1])


def test_check_target_and_describe_target_errors():
    with pytest.raises(ValueError, match="row.name"):
        check_target(make_row(name="not a row of the suite"))
    with pytest.raises(ValueError, match="row.extra"):
        check_target(make_row(name=DISTILLATION, teacher_parameters=10))
    with pytest.raises(TypeError, match="row"):
        check_target({"name": INT8})
    with pytest.raises(ValueError, match="unknown criteria"):
        describe_target({"max_size": 3})
    with pytest.raises(TypeError, match="target"):
        describe_target({})


# --------------------------------------------------------------------------------------------------
# the Pareto front
# --------------------------------------------------------------------------------------------------

def brute_force_front(points):
    """The definition, literally: i is on the front unless some j is <= everywhere and < somewhere."""
    front = []
    for i, p in enumerate(points):
        if not any(all(q <= p) and any(q < p) for j, q in enumerate(points) if j != i):
            front.append(i)
    return front


@settings(max_examples=60, deadline=None)
@given(points=arrays(np.float64, st.tuples(st.integers(1, 25), st.integers(1, 3)),
                     elements=st.integers(-5, 5).map(float)))
def test_pareto_front_matches_the_definition(points):
    front = pareto_front(points)
    assert front.tolist() == brute_force_front(points)
    assert len(front) >= 1                                    # a finite set always has a non-dominated point
    off_front = set(range(len(points))) - set(front.tolist())
    for i in off_front:                                       # everything off the front is dominated by the front
        assert any(np.all(points[j] <= points[i]) and np.any(points[j] < points[i]) for j in front)


@settings(max_examples=30, deadline=None)
@given(points=arrays(np.float64, st.tuples(st.integers(1, 15), st.just(2)), elements=st.integers(-5, 5).map(float)))
def test_pareto_front_maximize_is_minimizing_the_negation(points):
    flipped = points * np.array([-1.0, 1.0])
    assert pareto_front(points, maximize=[True, False]).tolist() == pareto_front(flipped).tolist()


def test_pareto_front_small_example():
    # (size ratio up, loss down): 50x/0.9 pt and 4x/0.1 pt are both worth shipping; 3x/0.5 pt is not
    points = [[4.0, 0.1], [50.0, 0.9], [3.0, 0.5], [4.0, 0.1]]
    assert pareto_front(points, maximize=[True, False]).tolist() == [0, 1, 3]


@pytest.mark.parametrize("points, maximize, error, match", [
    ([1.0, 2.0], None, ValueError, "points"),
    (np.zeros((0, 2)), None, ValueError, "points"),
    ([[1.0, float("nan")]], None, ValueError, "points"),
    ([["a", "b"]], None, TypeError, "points"),
    ([[1.0, 2.0]], [True], ValueError, "maximize"),
    ([[1.0, 2.0]], [1, 0], ValueError, "maximize"),
])
def test_pareto_front_bad_input(points, maximize, error, match):
    with pytest.raises(error, match=match):
        pareto_front(points, maximize=maximize)


def test_plot_pareto_draws_every_row_and_the_front():
    rows = [make_row(INT8, 4_000_000, 1_000_000).as_dict(),
            make_row(PIPELINE, 5_000_000, 50_000, value=0.985).as_dict(),
            make_row(PRUNING, latency=2.5, value=0.97).as_dict()]
    ax = plot_pareto(rows)
    assert len(ax.collections) == 3
    front_line = ax.get_lines()[0]
    assert front_line.get_xdata().tolist() == [4.0, 100.0]
    assert ax.texts[0].get_text() == "no latency" and ax.texts[2].get_text() == "2.50x speed"
    assert not plot_pareto(rows[:2]).texts                    # no row measured latency: no labels
    with pytest.raises(ValueError, match="rows"):
        plot_pareto([])


# --------------------------------------------------------------------------------------------------
# files and the table
# --------------------------------------------------------------------------------------------------

def test_write_and_load_results_round_trip(tmp_path):
    rows = [make_row(INT8).as_dict(), make_row(PRUNING, latency=2.2).as_dict()]
    rows_file, meta_file = write_results(rows, tmp_path / "compression.json", meta={"cpu": "test"})
    assert meta_file == meta_path(rows_file) == tmp_path / "compression.meta.json"
    assert load_results(rows_file) == rows
    assert json.loads(meta_file.read_text()) == {"cpu": "test"}
    frame = results_frame(rows)
    assert frame.loc[INT8, "change (pt)"] == pytest.approx(-0.125)
    assert list(frame.index) == [INT8, PRUNING]


def test_default_meta_names_the_machine(tmp_path):
    _, meta_file = write_results([make_row().as_dict()], tmp_path / "r.json")
    meta = json.loads(meta_file.read_text())
    assert {"cpu", "cpu_count", "torch", "tensorflow", "date", "python"} <= set(meta)
    assert meta["torch"].startswith("2.")


def test_load_results_errors(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "obj.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="JSON list"):
        load_results(tmp_path / "obj.json")
    (tmp_path / "short.json").write_text('[{"name": "x"}]')
    with pytest.raises(ValueError, match="lacks the keys"):
        load_results(tmp_path / "short.json")


def test_format_row_shows_ratios_metric_target_and_seconds():
    row = make_row(INT8, 4_000_000, 1_000_000, latency=0.8).as_dict() | {"seconds": 12.34}
    line = format_row(row)
    for piece in (INT8, "4.00x", "accuracy 0.99125 -> 0.99", "0.80x", "met", "12.3"):
        assert piece in line
    missed = make_row(INT8, 1_000_000, 1_000_000).as_dict()
    assert "MISSED" in format_row(missed) and format_row(missed).endswith("-")
    assert format_table([row, missed]).count("\n") == 3


def test_resolve_rows_errors():
    assert resolve_rows("compression") == SUITES["compression"]
    assert resolve_rows("compression", ["tflite_int8", "int8_ptq"]) == ("int8_ptq", "tflite_int8")
    with pytest.raises(ValueError, match="suite"):
        resolve_rows("speed")
    with pytest.raises(ValueError, match="only"):
        resolve_rows("compression", ["int9_ptq"])
    with pytest.raises(TypeError, match="only"):
        resolve_rows("compression", "int8_ptq")


# --------------------------------------------------------------------------------------------------
# the runner and the command line, on fake row modules
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def fake_suite(monkeypatch):
    """A suite ``fake`` of four row modules: one meets its target, one misses, one raises, one is missing."""
    def module(name, run):
        fake = types.ModuleType(f"mmtutor.bench.{name}")
        fake.run = run
        monkeypatch.setitem(sys.modules, fake.__name__, fake)

    module("fake_good", lambda: [make_row(INT8, 4_000_000, 1_000_000)])
    module("fake_missed", lambda: [make_row(PRUNING, latency=1.2), make_row(MINILM, 400, 100, 1.0, 0.995, 2.0)])

    def broken():
        raise RuntimeError("the converter crashed")
    module("fake_broken", broken)
    monkeypatch.setitem(SUITES, "fake", ("fake_good", "fake_missed", "fake_broken", "fake_absent"))
    return "fake"


def test_run_suite_measures_every_row_and_reports_failures(fake_suite):
    seen, failed = [], []
    run = run_suite(fake_suite, on_row=seen.append, on_failure=lambda name, text: failed.append((name, text)))
    assert [row["name"] for row in run.rows] == [INT8, PRUNING, MINILM] == [row["name"] for row in seen]
    assert all(row["seconds"] >= 0 for row in run.rows)
    assert set(run.failures) == {"fake_broken", "fake_absent"} == {name for name, _ in failed}
    assert "the converter crashed" in run.failures["fake_broken"]
    assert "No module named" in run.failures["fake_absent"]
    assert run.missed == [PRUNING] and not run.ok
    assert run_suite(fake_suite, only=["fake_good"]).ok


def test_run_suite_seeds_every_row_and_restores_threads(monkeypatch):
    import torch

    def draw():
        torch.set_num_threads(1)
        return [make_row(INT8, 4_000_000, 1_000_000, value=float(torch.rand(1)) / 1000)]
    fake = types.ModuleType("mmtutor.bench.fake_random")
    fake.run = draw
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(SUITES, "fake", ("fake_random",))
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    first = run_suite("fake").rows[0]["metric_value"]
    torch.rand(5)
    assert run_suite("fake").rows[0]["metric_value"] == first   # the same draw, whatever ran before
    assert torch.get_num_threads() == threads


def test_run_suite_refuses_a_row_module_that_returns_no_rows(monkeypatch):
    fake = types.ModuleType("mmtutor.bench.fake_empty")
    fake.run = lambda: {"name": INT8}
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(SUITES, "fake", ("fake_empty",))
    run = run_suite("fake")
    assert run.rows == [] and "must return a non-empty list of Row" in run.failures["fake_empty"]


def test_cli_writes_json_and_meta_and_exits_1_naming_the_problems(fake_suite, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main([fake_suite, "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert INT8 in captured.out and "MISSED" in captured.out
    assert f"target missed: {PRUNING}" in captured.err
    assert "row module fake_broken failed: RuntimeError: the converter crashed" in captured.err
    assert "fake_absent" in captured.err
    rows = load_results(out)
    assert [row["name"] for row in rows] == [INT8, PRUNING, MINILM]
    meta = json.loads(meta_path(out).read_text())
    assert meta["failed"] == ["fake_absent", "fake_broken"] and meta["suite"] == "fake"


def test_cli_exits_0_when_every_target_is_met(fake_suite, tmp_path, capsys):
    assert main([fake_suite, "--only", "fake_good", "--json", str(tmp_path / "ok.json")]) == 0
    assert "1 rows" in capsys.readouterr().out


def test_cli_list_runs_nothing(capsys):
    assert main(["compression", "--list"]) == 0
    out = capsys.readouterr().out
    for module in SUITES["compression"]:
        assert module in out
    for name in TARGETS:
        assert name in out


@pytest.mark.parametrize("argv, match", [
    (["speed"], "argument suite: invalid choice"),
    (["compression", "--only", "int9_ptq"], "argument --only: .*int9_ptq"),
    (["compression", "--json", "/no/such/folder/out.json"], "argument --json: .*folder must exist"),
    (["compression", "--json", "."], "argument --json: .*directory"),
    ([], "suite"),
])
def test_cli_argument_errors(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert any(line for line in capsys.readouterr().err.splitlines() if re.search(match, line))


def test_cli_unwritable_json_path(tmp_path, capsys, monkeypatch):
    # root may write anywhere, so a folder without write permission is simulated through os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    with pytest.raises(SystemExit):
        main(["compression", "--json", str(locked / "out.json")])
    assert "argument --json: json path must be writable" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# end to end: the real suite, as the lead and CI run it
# --------------------------------------------------------------------------------------------------

def test_compression_suite_end_to_end(tmp_path):
    """Every row of the real suite runs in one process (< 10 min on 2 cores) and meets its target."""
    out = tmp_path / "compression.json"
    env = {**os.environ, "MMTUTOR_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, "-m", "mmtutor.bench", "compression", "--json", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-5000:]}"
    rows = load_results(out)
    assert {row["name"] for row in rows} == set(TARGETS)
    for row in rows:
        assert set(ROW_KEYS) <= set(row)
        assert row["target_met"] is True, row
        assert row["size_ratio"] == pytest.approx(row["baseline_bytes"] / row["bytes"])
    meta = json.loads(meta_path(out).read_text())
    assert meta["failed"] == [] and meta["seconds"] < 600

