"""The one formatter of sizes, rates, durations and times (learningchain/core/units.py)
that the explorer's pages, its index and the CLI share: decimal prefixes everywhere."""
import ast
import time
from pathlib import Path

import learningchain.core.units as units_module
from learningchain.core.units import age, byte_size, clock, duration, hash_rate, metric_name, timestamp


def test_sizes_take_decimal_prefixes():
    assert byte_size(12) == "12 B" and byte_size(999) == "999 B"
    assert byte_size(1000) == "1.0 kB" and byte_size(2048) == "2.0 kB" and byte_size(45_300) == "45.3 kB"
    assert byte_size(12_100_000) == "12.1 MB" and byte_size(3_500_000_000) == "3.5 GB"
    assert byte_size(999_960) == "1.0 MB" and byte_size(999.6) == "1.0 kB"  # never "1000.0 kB"
    assert byte_size(-2048) == "-2.0 kB"


def test_hash_rates():
    assert hash_rate(950) == "950 H/s" and hash_rate(2500) == "2.5 kH/s" and hash_rate(748_600) == "748.6 kH/s"
    assert hash_rate(1435417.9) == "1.44 MH/s" and hash_rate(2.5e9) == "2.50 GH/s"


def test_what_is_not_a_number_is_a_dash():
    for f in (byte_size, hash_rate, duration, timestamp, age):
        assert f(None) == "-" and f("12") == "-" and f(True) == "-"
    assert byte_size(float("inf")) == "inf B" and duration(float("nan")) == "nan"


def test_durations():
    assert duration(0.00085) == "850 us" and duration(0.0123) == "12.3 ms" and duration(4.2) == "4.20 s"
    assert duration(192) == "3 min 12 s" and duration(7500) == "2 h 05 min" and duration(-4.2) == "-4.20 s"


def test_timestamps_and_ages():
    ms = 1_764_612_060_000
    assert timestamp(ms) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
    assert timestamp(ms).endswith(clock(ms / 1000))
    assert age(ms, ms + 12_000) == "12 s ago" and age(ms, ms + 180_000) == "3 min ago"
    assert age(ms, ms + 7_200_000) == "2 h ago" and age(ms, ms + 3 * 86_400_000) == "3 days ago"
    assert age(ms + 4200, ms) == "in 4.20 s"


def test_the_metric_of_a_task():
    assert metric_name("classification") == "accuracy" and metric_name("regression") == "rmse"


def test_units_is_pure_and_the_only_copy():
    """It imports only the standard library; the explorer and the CLI keep no
    formatter of their own (they were four copies, two of them in KiB)."""
    tree = ast.parse(Path(units_module.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "math", "time", "typing"}
    root = Path(units_module.__file__).parents[1]
    for rel in ("node/web/pages.py", "node/web/index_page.py", "node/web/explorer.py", "cli/inspection.py"):
        text = (root / rel).read_text()
        assert "strftime" not in text and "1 << 10" not in text and '"classification" else' not in text, rel
