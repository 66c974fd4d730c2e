r"""``python -m mmtutor.bench compression --json OUT.json``: every headline compression result, re-measured.

Each row compares a compressed model with its uncompressed baseline, measured side by side in one process:

- ``baseline_bytes`` / ``bytes``: the shipped artefact (:func:`mmtutor.evaluate.model_size_bytes`, or the
  file a converter writes), and ``size_ratio`` = ``baseline_bytes / bytes``;
- ``metric``, ``baseline_metric_value``, ``metric_value``: the quality measure (test accuracy, or the mean
  cosine similarity to the baseline's outputs) of both models;
- ``latency_ratio``: the baseline's median latency over the compressed model's, timed interleaved by
  :func:`mmtutor.evaluate.compare_latency` under a fixed thread count (``threads``, ``batch_size``); above
  1 means the compressed model is faster. ``None`` where a row makes no latency claim.

A row also carries its ``target`` (the issue's acceptance criterion, in words) and ``target_met``, checked
by :func:`check_target`. The rows live in one module each (``mmtutor.bench.<row>``), listed in
:data:`SUITES`; each exposes ``run() -> list[Row]``. Running a suite, printing its table, reading the JSON
back and drawing the Pareto plot are in ``mmtutor.bench.report``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field

__all__ = ["Row", "SUITES", "TARGETS", "check_target", "describe_target", "accuracy_drop_points"]

#: The row modules of each suite, in the order they run (and appear in the table).
SUITES = {
    "compression": ("int8_ptq", "structured_pruning", "distillation", "deep_compression", "minilm_int8",
                    "tflite_int8"),
}

#: Acceptance criteria by row name: minimum size ratio, minimum latency ratio, and the largest allowed
#: quality loss, either in accuracy points (``max_drop_points``) or as a minimum fraction of the baseline's
#: metric (``min_retained``) or a minimum absolute metric (``min_metric``).
TARGETS = {
    "int8 post-training (fusion model)": {"min_size_ratio": 3.9, "max_drop_points": 0.5},
    "structured pruning (fusion model)": {"min_latency_ratio": 2.0, "max_drop_points": 1.0},
    "distillation (fusion model)": {"max_parameter_fraction": 0.10, "min_retained": 0.99},
    "deep compression pipeline (fusion model)": {"min_size_ratio": 50.0, "max_drop_points": 1.0},
    "all-MiniLM-L6-v2 int8": {"min_size_ratio": 3.5, "min_metric": 0.99, "min_latency_ratio": 1.8},
    "TFLite full-integer (fusion model, Keras)": {"min_size_ratio": 3.9, "max_drop_points": 0.5},
}

_TARGET_WORDS = {
    "min_size_ratio": "size >= {}x",
    "min_latency_ratio": "latency >= {}x faster",
    "max_drop_points": "accuracy drop <= {} pt",
    "max_parameter_fraction": "parameters <= {:.0%} of teacher",
    "min_retained": "retains >= {:.0%} of the baseline metric",
    "min_metric": "metric >= {}",
}


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Row.{name} must be an int number of bytes, got {type(value).__name__}: {value!r}")
    if value <= 0:
        raise ValueError(f"Row.{name} must be a positive number of bytes, got {value}")
    return int(value)


def _finite_float(name: str, value, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Row.{name} must be a real number{' or None' if optional else ''}, "
                        f"got {type(value).__name__}: {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"Row.{name} must be finite, got {value}")
    return float(value)


@dataclass
class Row:
    """One measured comparison; :meth:`as_dict` gives the JSON row.

    Integers and floats are converted to plain Python numbers on construction (NumPy scalars from a
    measurement become JSON-serialisable), and non-positive byte counts or non-finite metrics are refused.
    """

    name: str
    model: str
    baseline_bytes: int
    bytes: int
    metric: str
    baseline_metric_value: float
    metric_value: float
    latency_ratio: float | None = None
    threads: int | None = None
    batch_size: int | None = None
    extra: dict = field(default_factory=dict)  # row-specific facts, e.g. parameter counts

    def __post_init__(self):
        for name in ("name", "model", "metric"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"Row.{name} must be a non-empty str, got {getattr(self, name)!r}")
        self.baseline_bytes = _positive_int("baseline_bytes", self.baseline_bytes)
        self.bytes = _positive_int("bytes", self.bytes)
        self.baseline_metric_value = _finite_float("baseline_metric_value", self.baseline_metric_value)
        self.metric_value = _finite_float("metric_value", self.metric_value)
        self.latency_ratio = _finite_float("latency_ratio", self.latency_ratio, optional=True)
        for name in ("threads", "batch_size"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                    raise ValueError(f"Row.{name} must be a positive int or None, got {value!r}")
                setattr(self, name, int(value))
        if not isinstance(self.extra, dict):
            raise TypeError(f"Row.extra must be a dict, got {type(self.extra).__name__}")
        clash = set(self.extra) & (set(self.__dataclass_fields__) | {"size_ratio", "target", "target_met",
                                                                     "seconds"})
        if clash:
            raise ValueError(f"Row.extra must not reuse the row's own keys, got {sorted(clash)}")

    @property
    def size_ratio(self) -> float:
        """``baseline_bytes / bytes``: how many times smaller the compressed artefact is."""
        return self.baseline_bytes / self.bytes

    def as_dict(self) -> dict:
        """The JSON row: the fields, ``size_ratio``, ``target`` and ``target_met``, then ``extra``'s keys."""
        row = asdict(self)
        extra = row.pop("extra")
        row["size_ratio"] = self.size_ratio
        target = TARGETS.get(self.name)
        row["target"] = describe_target(target) if target else None
        row["target_met"] = check_target(self) if target else None
        row.update(extra)
        return row


def accuracy_drop_points(row: Row) -> float:
    """``100 * (baseline_metric_value - metric_value)``: the loss in points (negative: it improved)."""
    return 100 * (row.baseline_metric_value - row.metric_value)


def describe_target(target: dict) -> str:
    """A target of :data:`TARGETS` in words, e.g. ``"size >= 3.9x, accuracy drop <= 0.5 pt"``."""
    if not isinstance(target, dict) or not target:
        raise TypeError(f"target must be a non-empty dict like the values of TARGETS, got {target!r}")
    unknown = set(target) - set(_TARGET_WORDS)
    if unknown:
        raise ValueError(f"target has unknown criteria {sorted(unknown)}; known: {sorted(_TARGET_WORDS)}")
    return ", ".join(_TARGET_WORDS[key].format(value) for key, value in target.items())


def check_target(row: Row) -> bool:
    """Whether ``row`` meets :data:`TARGETS` for its name (accuracy points are 100 x the accuracy).

    A latency target is missed when the row measured no latency (``latency_ratio is None``). A
    parameter-fraction target reads ``row.extra["student_parameters"]`` and ``row.extra["teacher_parameters"]``.
    """
    if not isinstance(row, Row):
        raise TypeError(f"row must be a Row, got {type(row).__name__}")
    if row.name not in TARGETS:
        raise ValueError(f"row.name must be one of the TARGETS {sorted(TARGETS)}, got {row.name!r}")
    target = TARGETS[row.name]
    ok = True
    if "min_size_ratio" in target:
        ok &= row.size_ratio >= target["min_size_ratio"]
    if "min_latency_ratio" in target:
        ok &= row.latency_ratio is not None and row.latency_ratio >= target["min_latency_ratio"]
    if "max_drop_points" in target:
        ok &= accuracy_drop_points(row) <= target["max_drop_points"] + 1e-9
    if "min_retained" in target:
        ok &= row.metric_value >= target["min_retained"] * row.baseline_metric_value
    if "min_metric" in target:
        ok &= row.metric_value >= target["min_metric"]
    if "max_parameter_fraction" in target:
        missing = {"student_parameters", "teacher_parameters"} - set(row.extra)
        if missing:
            raise ValueError(f"row.extra must hold {sorted(missing)} to check {row.name!r}, got keys "
                             f"{sorted(row.extra)}")
        ok &= row.extra["student_parameters"] <= target["max_parameter_fraction"] * row.extra["teacher_parameters"]
    return bool(ok)
