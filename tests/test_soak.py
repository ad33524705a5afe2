"""A short run of bench/soak.py as a test: census-mcp in passthrough, thousands of new tokens, ever-new
searches, writes and refresh jobs; its memory stays flat and its sockets to Census within the pool.

Why: a team server runs for months. The unit tests in test_bounds.py prove each bound; this proves the
server as deployed (one uvicorn process, real sockets, stateless HTTP through the SDK) keeps them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH_DIR))  # bench/ is scripts, not a package; bench/run.py imports the same way

import soak  # noqa: E402

# Fewer sockets than the clients' list pages would open at once (over 20 without a bound).
POOL = 4
OPTIONS = soak.Options(seconds=30, warmup_seconds=10, clients=8, pool=POOL, write_every=10, sample_seconds=1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS and sockets from Linux /proc")
def test_a_short_soak_keeps_rss_within_five_percent_and_sockets_within_the_pool() -> None:
    report = soak.run(OPTIONS)
    assert report.failures == {}
    assert set(report.by_tool) == {
        "list_sources",
        "list_source_tables",
        "get_source",
        "create_source",
        "delete_source",
        "refresh_source_tables",
        "get_refresh_tables_status",
    }
    assert report.sessions >= 200, "too few users to show anything"
    assert len(report.measured) >= 10
    # The stated bound: RSS at the end within 5% of its value after the warm-up.
    assert report.growth < soak.MAX_GROWTH, soak.render(report)
    assert 0 < report.peak_sockets <= POOL, soak.render(report)
