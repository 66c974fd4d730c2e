"""plotting: small helpers that keep the book's figures legible.

Matplotlib labels a logarithmic axis ``10^1, 10^2`` and, when the data span less than a decade, labels
its minor ticks too (``3×10^2 4×10^2 6×10^2``), which run into each other. :func:`plain_log_axis` puts the
major ticks at :math:`m \\cdot 10^k` for a few mantissas :math:`m` (1, 2 and 5 by default) and writes them
as plain numbers (``20``, ``500``), with unlabelled minor ticks.
"""

from __future__ import annotations

__all__ = ["plain_log_axis"]


def plain_log_axis(ax, axis: str = "x", subs=(1.0, 2.0, 5.0)):
    """Make ``axis`` (``"x"`` or ``"y"``) of the matplotlib ``ax`` logarithmic, with major ticks at
    ``m * 10**k`` for ``m`` in ``subs`` labelled as plain numbers (``f"{value:g}"``) and no minor labels.
    Returns ``ax``."""
    from matplotlib.axes import Axes
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    subs = tuple(float(m) for m in subs)
    if not subs or any(not 1 <= m < 10 for m in subs):
        raise ValueError(f"subs must be mantissas in [1, 10), got {subs}")
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())
    return ax
