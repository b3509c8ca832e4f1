"""Shared rules of the fuzz suite (tests/**/test_fuzz_*.py): how many examples, a hard time
limit per call, and the one property every fuzzed entry point must have.

The property: a malformed input ends in a ``ValueError``, ``TypeError`` or
``FileNotFoundError`` whose message names the field, column, key or file at fault — never
another exception type, a hang, or silent acceptance.

Examples are drawn deterministically (``derandomize``) so ``make test`` is reproducible, and
few (``MARL_REC_FUZZ_EXAMPLES``, default 25 per test) so the whole suite stays within about
30 s on 2 cores; explore more with e.g. ``MARL_REC_FUZZ_EXAMPLES=2000 MARL_REC_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from hypothesis import HealthCheck, settings

ALLOWED = (ValueError, TypeError, FileNotFoundError)

FUZZ = settings(
    max_examples=int(os.environ.get("MARL_REC_FUZZ_EXAMPLES", "25")),
    deadline=None,  # load on a shared machine makes per-example deadlines flaky; hangs are caught below
    database=None,  # write no .hypothesis/ folder
    derandomize=not os.environ.get("MARL_REC_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail (TimeoutError) if the block runs longer than ``seconds``: a hang is a bug too."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def outcome(call: Callable[[], Any], seconds: int = 20) -> BaseException | Any:
    """``call()``'s result, or the allowed exception it raised; any other exception (and a
    hang) propagates and fails the test."""
    with time_limit(seconds):
        try:
            return call()
        except ALLOWED as error:
            return error


def assert_refused(call: Callable[[], Any], names: Iterable[str], seconds: int = 20) -> BaseException:
    """``call()`` must raise an allowed exception whose message contains one of ``names``."""
    result = outcome(call, seconds)
    names = [str(n) for n in names]
    assert isinstance(result, BaseException), f"silently accepted (expected an error naming one of {names})"
    assert any(n in str(result) for n in names), (
        f"{type(result).__name__} names none of {names}: {result}")
    return result
