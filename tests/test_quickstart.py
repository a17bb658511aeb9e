"""README's main job, ``python3 examples/quickstart.py``, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quickstart_dumps_a_child_and_names_where_its_threads_wait() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py")],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^wrote child\.dmp: \d+ bytes", out, re.M)
    assert "reason: DUMP_REQUESTED (requested by thread" in out
    assert "verdict: no deadlock" in out
    # the child names its two workers with PR_SET_NAME and parks them in time.sleep()
    for name in ("worker-one", "worker-two"):
        block = out.split(f"'{name}'")[1].split("\nthread ")[0]
        assert "waits: clock_nanosleep" in block
        assert re.search(r"#0 0x[0-9a-f]+ clock_nanosleep\+0x[0-9a-f]+ \(libc\.so\.6\+", block)
        assert "python: worker (<string>:6)" in block  # the CHILD source's time.sleep line
    assert "child state after the dump: S" in out  # running again (sleeping), not stopped
