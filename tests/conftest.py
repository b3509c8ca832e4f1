"""Shared test set-up: the helper modules in tests/helpers (a synthetic MDP with closed-form
values, the trainer's subprocess worker, …) are importable from every test folder."""
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fail-on-skip", action="store_true",
                     help="report a skipped test as failed (make bench: the tests of an optional "
                          "dependency, e.g. d3rlpy, must run where it is installed)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.config.getoption("--fail-on-skip"):
        report.outcome = "failed"
        report.longrepr = f"skipped, and --fail-on-skip is set: {report.longrepr}"


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Every test runs torch on one thread: on a 2-core host the 2-thread speed swings with the
    host, and a learning test's result must not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
