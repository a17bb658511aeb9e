"""dbghelp.load() in a Windows python under Wine with WMI left on.

CPython 3.12+ answers platform.machine() with a WMI query, on which Wine 8 aborts the
interpreter (and on Windows it is a needless COM round trip). MDK_WINE_WMI=0 disables
WMI for the rest of the suite (winenv.WMI); this test never does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from winenv import WineEnv, winpath

pytestmark = pytest.mark.timeout(300)

LOAD = r'''
import json, sys
from minidumpkit._ffi import dbghelp, kernel32
dbghelp.load(); kernel32.load()
json.dump({"loaded": True}, open(sys.argv[1], "w"))
'''


def test_dbghelp_load_works_with_wmi_on(wine: WineEnv, tmp_path: Path) -> None:
    """load() opens dbghelp and kernel32 without a WMI query: the interpreter survives
    and writes its result."""
    script, result = tmp_path / "load.py", tmp_path / "load.json"
    script.write_text(LOAD)
    status = wine.run_python(winpath(script), winpath(result), timeout=120, wmi=True)
    assert result.exists(), f"the Windows python died in dbghelp.load() (exit status {status})"
    data = json.loads(result.read_text())
    assert data["loaded"] and status == 0
