"""The index chart: G0 at round 0, baselines as labelled lines, a fixed axis by
default (a data-scaled one on request), integer round ticks."""
import re

from learningchain.node.web.chart import Baseline, axis_range, fixed_range, metric_chart, round_ticks

BASELINES = [Baseline("g0", 0.04), Baseline("local-only", 0.93), Baseline("centralized", 0.97)]


def attrs(svg: str, tag: str, cls: str) -> list[dict]:
    """The attributes of every ``<tag class="cls ...">``."""
    out = []
    for m in re.finditer(rf'<{tag} ([^>]*class="{cls}[ "][^>]*)>', svg):
        out.append(dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(1))))
    return out


def test_the_data_scaled_axis_fits_the_rounds():
    lo, hi = axis_range([0.95, 0.97, 0.98])
    assert 0.9 < lo < 0.95 and 0.98 < hi < 1.0
    assert axis_range([0.5, 0.5])[0] < 0.5 < axis_range([0.5, 0.5])[1]  # a flat series still has a range


def test_the_fixed_axis_is_zero_to_one_for_accuracy_and_from_zero_for_an_error():
    assert fixed_range("accuracy", [0.2, 0.9]) == (0.0, 1.0)
    lo, hi = fixed_range("rmse", [56.4, 70.5])
    assert lo == 0.0 and 70.5 < hi < 75


def test_round_ticks_are_integers_and_few():
    assert round_ticks(0, 10) == list(range(11))
    assert round_ticks(0, 30) == [0, 5, 10, 15, 20, 25, 30]
    many = round_ticks(0, 409)
    assert len(many) <= 12 and all(isinstance(t, int) for t in many) and many[0] == 0
    assert round_ticks(0, 1) == [0, 1]


def test_g0_is_the_point_at_round_zero_and_baselines_are_labelled_lines():
    svg = str(metric_chart([(1, 0.95), (2, 0.97), (3, 0.98)], "accuracy", BASELINES))
    assert svg.startswith('<svg id="chart" data-rounds="3" data-axis="fixed"')
    points = attrs(svg, "circle", "point")
    assert [p["data-round"] for p in points] == ["0", "1", "2", "3"]
    assert points[0]["class"] == "point g0" and float(points[0]["data-value"]) == 0.04
    lines = {a["data-name"]: float(a["data-value"]) for a in attrs(svg, "line", "baseline")}
    assert lines == {"g0": 0.04, "local-only": 0.93, "centralized": 0.97}
    assert "centralized 0.9700" in svg and "local-only 0.9300" in svg and "g0 0.0400" in svg
    ticks = re.findall(r'<text [^>]*class="tick">([^<]*)</text>', svg)
    assert ticks == ["0", "1", "2", "3"]  # integer rounds, from G0's round 0
    y_labels = re.findall(r'text-anchor="end">([^<]*)</text>', svg)
    assert y_labels == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]  # the fixed [0, 1] axis


def test_the_data_scaled_axis_marks_baselines_outside_it():
    svg = str(metric_chart([(1, 0.95), (2, 0.97), (3, 0.98)], "accuracy", BASELINES, fixed=False))
    assert 'data-axis="data"' in svg and "0.0" not in re.findall(r'text-anchor="end">([^<]*)<', svg)
    assert "g0 0.0400 (below the axis)" in svg and "centralized 0.9700</text>" in svg
    assert len(attrs(svg, "line", "baseline")) == 3  # drawn at the edge, still there
    (g0,) = attrs(svg, "circle", "point g0")
    assert "off-axis" in g0["class"] and "G0 0.0400, below the axis" in svg
    first = re.search(r'<polyline points="([\d.]+),', svg).group(1)
    assert float(first) > float(g0["cx"])  # the line starts at round 1, not at a G0 drawn out of place


def test_an_empty_chart_is_still_the_chart_element():
    svg = str(metric_chart([], "accuracy"))
    assert 'id="chart" data-rounds="0"' in svg and "No round has been evaluated yet" in svg
    only_g0 = str(metric_chart([], "accuracy", [Baseline("g0", 0.1)]))
    assert 'data-rounds="0"' in only_g0 and attrs(only_g0, "circle", "point")[0]["data-round"] == "0"


def test_rounds_and_baselines_that_are_not_finite_are_left_out_and_said_so():
    """A diverged regression (RMSE inf or NaN) must not put ``nan`` coordinates in the SVG."""
    inf, nan = float("inf"), float("nan")
    for fixed in (True, False):
        svg = str(metric_chart([(1, 56.4), (2, inf), (3, nan), (4, 60.1)], "rmse",
                               [Baseline("g0", 70.0), Baseline("centralized", nan)], fixed=fixed))
        assert "nan" not in svg.lower() and "inf" not in svg.lower().replace("info", "")
        assert 'data-rounds="2"' in svg and 'data-left-out="3"' in svg
        assert [p["data-round"] for p in attrs(svg, "circle", "point")] == ["0", "1", "4"]
        assert [a["data-name"] for a in attrs(svg, "line", "baseline")] == ["g0"]
        note = re.search(r'<tspan class="left-out" data-count="3">([^<]*)</tspan>', svg).group(1)
        assert "2 round(s) not drawn, their rmse not finite: 2, 3" in note and "centralized" in note
        coords = re.findall(r' (?:cx|cy|x1|x2|y1|y2|x|y)="([^"]*)"', svg)
        coords += re.search(r'<polyline points="([^"]*)"', svg).group(1).replace(",", " ").split()
        assert coords and all(re.fullmatch(r"-?[\d.]+", c) for c in coords)
    nothing = str(metric_chart([(1, nan)], "rmse"))
    assert 'data-rounds="0"' in nothing and "Nothing to draw (1 round(s) not drawn" in nothing
    assert "No round has been evaluated yet" not in nothing
