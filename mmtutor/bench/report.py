r"""Running a benchmark suite, printing its table, saving and reading its JSON, and the Pareto view.

A suite (:data:`mmtutor.bench.SUITES`) is a list of row modules ``mmtutor.bench.<row>``, each with a
``run() -> list[Row]``. :func:`run_suite` imports and runs them in order, timing each, and reports a row
module that fails (an import error, an exception) instead of stopping: the other rows are still measured.
:func:`write_results` stores the rows as a plain JSON list and, next to it, a small record of the machine
(:func:`machine_info`), because latency ratios are only meaningful with the hardware they were measured on.

**The Pareto view.** With objectives to minimise :math:`f_1, \dots, f_d`, point :math:`a` *dominates*
:math:`b` when it is no worse in every objective and strictly better in at least one,

.. math:: a \succ b \iff \forall k\; f_k(a) \le f_k(b) \;\wedge\; \exists k\; f_k(a) < f_k(b),

and the *Pareto front* is the set of points that no other point dominates (:func:`pareto_front`): the
only candidates worth shipping, whatever weight one gives to each objective.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from mmtutor.bench import SUITES, Row
from mmtutor.evaluate import fixed_threads
from mmtutor.runtime import seed_everything

__all__ = ["ROW_KEYS", "SuiteRun", "resolve_rows", "run_suite", "describe_problems", "format_speedup",
           "format_header", "format_row", "format_table", "check_output_path", "meta_path", "machine_info",
           "write_results", "load_results", "results_frame", "pareto_front", "plot_pareto"]

#: The keys every JSON row has (the issue's list); rows add ``threads``, ``batch_size``, ``target``,
#: ``target_met``, ``seconds`` and row-specific facts.
ROW_KEYS = ("name", "model", "baseline_bytes", "bytes", "size_ratio", "metric", "baseline_metric_value",
            "metric_value", "latency_ratio")


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------

def resolve_rows(suite: str, only: Sequence[str] | None = None) -> tuple[str, ...]:
    """The row modules of ``suite`` to run, in suite order; ``only`` keeps a subset (module names)."""
    if not isinstance(suite, str) or suite not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {suite!r}")
    rows = SUITES[suite]
    if only is None:
        return rows
    if isinstance(only, str) or not all(isinstance(name, str) for name in only):
        raise TypeError(f"only must be a list of row module names, got {only!r}")
    unknown = [name for name in only if name not in rows]
    if unknown:
        raise ValueError(f"only must name rows of the {suite!r} suite ({', '.join(rows)}), got unknown {unknown}")
    return tuple(name for name in rows if name in only)


@dataclass
class SuiteRun:
    """What :func:`run_suite` returns: the JSON rows, the row modules that failed, and the total time."""

    rows: list[dict] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # row module -> traceback text
    seconds: float = 0.0

    @property
    def missed(self) -> list[str]:
        """Names of the rows that did not meet their target."""
        return [row["name"] for row in self.rows if row.get("target_met") is False]

    @property
    def ok(self) -> bool:
        """Every row module ran and every row with a target met it."""
        return not self.failures and not self.missed


def run_suite(suite: str = "compression", only: Sequence[str] | None = None, *,
              on_row: Callable[[dict], None] | None = None,
              on_failure: Callable[[str, str], None] | None = None) -> SuiteRun:
    """Import and run the row modules of ``suite`` (all, or those named in ``only``) one after the other.

    Each JSON row is ``Row.as_dict()`` plus ``seconds``, the wall time of the ``run()`` call that produced
    it (the first row that trains the reference model pays for it; later rows reuse the per-process cache).
    Every row module starts from the same state, whatever ran before it: Python, NumPy and PyTorch seeded
    with 0 (:func:`mmtutor.runtime.seed_everything`), and PyTorch's thread count restored afterwards.
    ``on_row(row)`` is called as each row is ready and ``on_failure(module, traceback_text)`` when a row
    module cannot be imported, raises, or returns something other than a list of :class:`~mmtutor.bench.Row`.
    """
    modules = resolve_rows(suite, only)
    result = SuiteRun()
    suite_start = time.perf_counter()
    for module_name in modules:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"mmtutor.bench.{module_name}")
            seed_everything(0)
            with fixed_threads(None):                 # a row that changes the thread count does not leak it
                rows = module.run()
            if not isinstance(rows, (list, tuple)) or not rows or not all(isinstance(r, Row) for r in rows):
                raise TypeError(f"mmtutor.bench.{module_name}.run() must return a non-empty list of Row, "
                                f"got {rows!r}")
            dicts = [row.as_dict() for row in rows]
        except Exception:  # noqa: BLE001 - one broken row must not hide the others' measurements
            text = traceback.format_exc()
            result.failures[module_name] = text
            if on_failure is not None:
                on_failure(module_name, text)
            continue
        seconds = time.perf_counter() - start
        for row in dicts:
            row["seconds"] = seconds
            result.rows.append(row)
            if on_row is not None:
                on_row(row)
    result.seconds = time.perf_counter() - suite_start
    return result


def describe_problems(run: SuiteRun) -> str:
    """One line per problem of a finished run (failed modules, missed targets); empty when all is well."""
    lines = [f"row module {name} failed: {text.strip().splitlines()[-1]}" for name, text in run.failures.items()]
    for row in run.rows:
        if row.get("target_met") is False:
            lines.append(f"target missed: {row['name']} (wanted {row['target']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------------

_COLUMNS = (("row", 42), ("size", 8), ("metric: baseline -> compressed", 38), ("latency", 8), ("target", 7),
            ("seconds", 8))


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_speedup(ratio: float) -> str:
    """A latency ratio in words: ``"2.31× faster"`` (ratio >= 1) or ``"0.87× slower"``.

    The book's notebooks print speed-ups only in this form, which their output checker recognises as a
    timing (it changes from run to run) and masks.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)) or not np.isfinite(ratio) \
            or ratio <= 0:
        raise ValueError(f"ratio must be a positive finite number, got {ratio!r}")
    return f"{ratio:.2f}× {'faster' if ratio >= 1 else 'slower'}"


def format_header() -> str:
    """The table's header line and a rule under it."""
    line = " ".join(f"{title:<{width}}" for title, width in _COLUMNS).rstrip()
    return f"{line}\n{'-' * len(line)}"


def format_row(row: dict) -> str:
    """One JSON row as a table line: name, size ratio, metric before and after, latency ratio, target, seconds."""
    met = {True: "met", False: "MISSED", None: "-"}[row.get("target_met")]
    seconds = row.get("seconds")
    cells = (row["name"], _ratio(row["size_ratio"]),
             f"{row['metric']} {row['baseline_metric_value']:.5g} -> {row['metric_value']:.5g}",
             _ratio(row.get("latency_ratio")), met, "-" if seconds is None else f"{seconds:.1f}")
    return " ".join(f"{cell:<{width}}" for cell, (_, width) in zip(cells, _COLUMNS)).rstrip()


def format_table(rows: Sequence[dict]) -> str:
    """The header and one line per row."""
    return "\n".join([format_header(), *(format_row(row) for row in rows)])


# --------------------------------------------------------------------------------------------------
# the files
# --------------------------------------------------------------------------------------------------

def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a ``pathlib.Path`` if a JSON file can be written there; checked before a long run."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"json path must be a file path, got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"json path must be a file, got the directory {str(path)!r}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"json path's folder must exist, got {str(path)!r} ({str(parent)!r} does not exist)")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"json path must be writable, got {str(path)!r}")
    return path


def meta_path(path: str | os.PathLike) -> Path:
    """Where the machine record of the results file ``path`` goes: ``compression.json`` -> ``compression.meta.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.meta.json")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """The machine and software a measurement ran on: CPU model, cores, Python and library versions, date."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{package: _version(package) for package in ("torch", "tensorflow", "transformers", "ai-edge-litert",
                                                       "scikit-learn", "numpy")},
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }


def _plain(value):
    """JSON fallback for NumPy scalars a row module left in ``extra``."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a row value must be JSON-serialisable, got {type(value).__name__}: {value!r}")


def write_results(rows: Sequence[dict], path: str | os.PathLike, meta: dict | None = None) -> tuple[Path, Path]:
    """Write ``rows`` as a JSON list to ``path`` and ``meta`` (default :func:`machine_info`) next to it.

    Returns the two paths written (the rows and :func:`meta_path` of them).
    """
    path = check_output_path(path)
    meta = machine_info() if meta is None else meta
    path.write_text(json.dumps(list(rows), indent=2, default=_plain) + "\n", encoding="utf-8")
    meta_file = meta_path(path)
    meta_file.write_text(json.dumps(meta, indent=2, default=_plain) + "\n", encoding="utf-8")
    return path, meta_file


def load_results(path: str | os.PathLike) -> list[dict]:
    """Read a results file written by :func:`write_results` and check every row has :data:`ROW_KEYS`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be a results JSON file, got {str(path)!r} (no such file)")
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"path must hold a JSON list of rows (objects), got {type(rows).__name__} in {str(path)!r}")
    for i, row in enumerate(rows):
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"row {i} of {str(path)!r} lacks the keys {missing}")
    return rows


def results_frame(rows: Sequence[dict]):
    """The rows as a pandas ``DataFrame`` indexed by name, with the quality change in points and the target.

    ``change (pt)`` is ``100 * (metric_value - baseline_metric_value)``: negative when compression lost quality.
    """
    import pandas as pd

    frame = pd.DataFrame(list(rows)).set_index("name")
    frame["change (pt)"] = 100 * (frame["metric_value"] - frame["baseline_metric_value"])
    columns = ["model", "baseline_bytes", "bytes", "size_ratio", "metric", "baseline_metric_value", "metric_value",
               "change (pt)", "latency_ratio", "threads", "batch_size", "target", "target_met"]
    return frame[[column for column in columns if column in frame.columns]]


# --------------------------------------------------------------------------------------------------
# the Pareto view
# --------------------------------------------------------------------------------------------------

def pareto_front(points, maximize=None) -> np.ndarray:
    """Indices (ascending) of the points that no other point dominates.

    Parameters
    ----------
    points : array-like of shape (n, d)
        One row per candidate, one column per objective.
    maximize : sequence of d bools, optional
        Which objectives are better when larger (e.g. a size ratio, an accuracy); the others are
        minimised (e.g. an accuracy drop, a latency). Default: minimise all.

    Returns
    -------
    numpy.ndarray of int
        The indices of the non-dominated points. Equal points do not dominate each other, so copies
        of a front point are all on the front.
    """
    try:
        values = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"points must be an (n, d) array of numbers, got {type(points).__name__}") from error
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"points must be a non-empty 2-D array (n points, d objectives), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("points must be finite (a NaN objective cannot be compared)")
    if maximize is not None:
        flags = np.asarray(maximize)
        if flags.shape != (values.shape[1],) or flags.dtype != bool:
            raise ValueError(f"maximize must be {values.shape[1]} bools (one per objective), got {maximize!r}")
        values = np.where(flags, -values, values)
    no_worse = (values[:, None, :] <= values[None, :, :]).all(axis=2)    # [a, b]: a no worse than b everywhere
    better = (values[:, None, :] < values[None, :, :]).any(axis=2)       # [a, b]: a strictly better somewhere
    dominated = (no_worse & better).any(axis=0)                          # some a dominates b
    return np.flatnonzero(~dominated)


def plot_pareto(rows: Sequence[dict], ax=None, title: str | None = None):
    """Size ratio (log scale) against quality loss in points, one marker per row, the Pareto front joined.

    If any row measured a latency ratio, each marker is labelled with its speed-up (``no latency`` where a
    row has none); rows that met their target are filled, rows that missed it hollow. The legend names the
    metric of each row when the rows use different metrics. Returns the matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt

    from mmtutor.plotting import plain_log_axis

    if not rows:
        raise ValueError("rows must hold at least one result row")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ratios = np.array([row["size_ratio"] for row in rows], dtype=float)
    loss = np.array([100 * (row["baseline_metric_value"] - row["metric_value"]) for row in rows], dtype=float)
    front = pareto_front(np.column_stack([ratios, loss]), maximize=[True, False])
    order = front[np.argsort(ratios[front])]
    ax.plot(ratios[order], loss[order], color="0.6", linestyle="--", zorder=1, label="Pareto front")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    several_metrics = len({row["metric"] for row in rows}) > 1
    any_latency = any(row.get("latency_ratio") is not None for row in rows)
    for i, row in enumerate(rows):
        colour = colours[i % len(colours)]
        # rows at the same spot (e.g. two int8 rows, both lossless) get smaller markers and stacked labels
        same_spot = int(np.sum(np.isclose(ratios[:i], ratios[i], rtol=0.02) & np.isclose(loss[:i], loss[i], atol=0.02)))
        ax.scatter(ratios[i], loss[i], s=60 / (1 + same_spot), zorder=2 + same_spot, edgecolors=colour,
                   facecolors="none" if row.get("target_met") is False else colour,
                   label=f"{row['name']} ({row['metric']})" if several_metrics else row["name"])
        if any_latency:
            latency = row.get("latency_ratio")
            ax.annotate("no latency" if latency is None else f"{latency:.2f}x speed", (ratios[i], loss[i]),
                        textcoords="offset points", xytext=(6, 6 - 11 * same_spot), fontsize=8)
    ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    plain_log_axis(ax, "x")                                  # 5, 10, 20, 50: not 5x10^0, nor crowded minor labels
    ax.margins(x=0.08, y=0.15)
    ax.set_xlabel("size ratio (baseline bytes / compressed bytes, log scale)")
    ax.set_ylabel("quality loss (points of the row's metric)")
    ax.set_title(title or "Compression results: smaller to the right, better lower down")
    ax.legend(fontsize=7, loc="best")
    return ax
