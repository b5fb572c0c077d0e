"""The explorer's metric chart: the y-axis follows the data, min and max are marked."""
from learningchain.explorer import axis_range, metric_chart


def test_axis_is_scaled_to_the_data_not_zero_to_one():
    lo, hi = axis_range([0.95, 0.97, 0.98])
    assert 0.9 < lo < 0.95 and 0.98 < hi < 1.0
    assert axis_range([0.5, 0.5])[0] < 0.5 < axis_range([0.5, 0.5])[1]  # a flat series still has a range


def test_chart_marks_min_and_max_and_every_round():
    svg = str(metric_chart([(1, 0.95), (2, 0.97), (3, 0.98)], "accuracy"))
    assert "min 0.9500" in svg and "max 0.9800" in svg and 'width="100%"' in svg
    assert svg.count("<circle") == 3 and "0.0000" not in svg
    assert "No round" in str(metric_chart([], "accuracy"))
