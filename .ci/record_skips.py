"""pytest plugin for .ci/run: append each skipped test's node id to the file $MMGEN_CI_SKIPPED.

The first pass (no seed files, no browser) records what it skipped; the full pass runs those
again with everything present, plus the slow tests, so that together the two passes run every
test once where it can run.
"""
from __future__ import annotations

import os


def pytest_runtest_logreport(report) -> None:
    """Record a test skipped in any phase (a skip in a fixture is reported at setup)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        with open(os.environ["MMGEN_CI_SKIPPED"], "a", encoding="utf-8") as record:
            record.write(report.nodeid + "\n")
