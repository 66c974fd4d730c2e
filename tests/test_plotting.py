"""plain_log_axis: plain labels at 1-2-5 ticks on a log axis, no labelled minor ticks."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mmtutor.plotting import plain_log_axis  # noqa: E402


@pytest.mark.parametrize("axis", ["x", "y"])
def test_plain_log_axis_labels_1_2_5_ticks_as_plain_numbers(axis):
    fig, ax = plt.subplots()
    (ax.plot([300, 2000], [1, 2]) if axis == "x" else ax.plot([1, 2], [300, 2000]))
    plain_log_axis(ax, axis)
    fig.canvas.draw()
    target = ax.xaxis if axis == "x" else ax.yaxis
    assert (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log"
    low, high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    shown = [(t.get_loc(), t.label1.get_text()) for t in target.get_major_ticks() if low <= t.get_loc() <= high]
    assert [label for _, label in shown] == ["500", "1000", "2000"]
    assert all(t.label1.get_text() == "" for t in target.get_minor_ticks())
    plt.close(fig)


def test_plain_log_axis_rejects_bad_arguments():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="axis"):
        plain_log_axis(ax, "z")
    with pytest.raises(ValueError, match="subs"):
        plain_log_axis(ax, "x", subs=(0.5,))
    with pytest.raises(TypeError, match="ax"):
        plain_log_axis("not an axes")
    plt.close(fig)
