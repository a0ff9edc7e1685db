"""Suite-wide rules.

A skipped test is a failure here: a test that quietly skips because a file, a browser or a package is missing
tells the reader nothing was wrong when nothing was checked. Everything the suite needs is vendored in the
repository or installed by `make test`; a test that may legitimately not apply (a check that only makes sense
while an optional package is absent) carries ``@pytest.mark.allow_skip`` and says why in its skip reason.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_skip: this test may skip; its reason says when and why")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("allow_skip") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} skipped ({reason}); the suite allows no skips: install or vendor what it needs "
            "(`make test` sets everything up), or mark the test allow_skip with the reason"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} skipped as a whole module ({reason}); the suite allows no skips"
