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
:data:`SUITES`; each exposes ``run() -> list[Row]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Row", "SUITES", "TARGETS", "check_target"]

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


@dataclass
class Row:
    """One measured comparison; :meth:`as_dict` gives the JSON row."""

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

    @property
    def size_ratio(self) -> float:
        return self.baseline_bytes / self.bytes

    def as_dict(self) -> dict:
        row = asdict(self)
        extra = row.pop("extra")
        row["size_ratio"] = self.size_ratio
        target = TARGETS.get(self.name)
        row["target"] = describe_target(target) if target else None
        row["target_met"] = check_target(self) if target else None
        row.update(extra)
        return row


def describe_target(target: dict) -> str:
    words = {"min_size_ratio": "size >= {}x", "min_latency_ratio": "latency >= {}x faster",
             "max_drop_points": "accuracy drop <= {} pt", "max_parameter_fraction": "parameters <= {:.0%} of teacher",
             "min_retained": "retains >= {:.0%} of the baseline metric", "min_metric": "metric >= {}"}
    return ", ".join(words[key].format(value) for key, value in target.items())


def check_target(row: Row) -> bool:
    """Whether ``row`` meets :data:`TARGETS` for its name (accuracy points are 100 x the accuracy)."""
    target = TARGETS[row.name]
    ok = True
    if "min_size_ratio" in target:
        ok &= row.size_ratio >= target["min_size_ratio"]
    if "min_latency_ratio" in target:
        ok &= row.latency_ratio is not None and row.latency_ratio >= target["min_latency_ratio"]
    if "max_drop_points" in target:
        ok &= 100 * (row.baseline_metric_value - row.metric_value) <= target["max_drop_points"] + 1e-9
    if "min_retained" in target:
        ok &= row.metric_value >= target["min_retained"] * row.baseline_metric_value
    if "min_metric" in target:
        ok &= row.metric_value >= target["min_metric"]
    if "max_parameter_fraction" in target:
        ok &= row.extra["student_parameters"] <= target["max_parameter_fraction"] * row.extra["teacher_parameters"]
    return bool(ok)
