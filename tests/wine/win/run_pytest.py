"""Runs pytest in the Windows python under Wine (tests/wine/test_wine_windows_tests.py).

``python run_pytest.py OUTPUT PYTEST_ARGS...``: Wine gives this process /dev/null as
stdio (a pipe handed to Wine can stay open for minutes), so pytest's console report,
and a fatal error's traceback (faulthandler writes to stderr's descriptor), go to
OUTPUT, which ends with ``exit N``. The Linux side reads the results from the JUnit
file named in PYTEST_ARGS and shows OUTPUT when that file is missing or says a test
failed.
"""

from __future__ import annotations

import sys

import pytest


def main(argv: list[str]) -> int:
    output, args = argv[0], argv[1:]
    with open(output, "w", encoding="utf-8") as out:
        sys.stdout = sys.stderr = out
        status = int(pytest.main(args))
        print(f"exit {status}", file=out, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
