"""examples/notebook.ipynb runs in a real Jupyter kernel (nbclient + ipykernel): it dumps
a child and the notebook holds the dump's HTML and short text views.

The thread names checked are the ones the notebook's child gives its threads; the
child's pid is the one the notebook prints. The child must be gone afterwards.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.live

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


def outputs(cell: nbformat.NotebookNode, mime: str) -> str:
    """Every ``mime`` output of ``cell`` (display data, results, stream text)."""
    found = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and mime == "text/plain":
            found.append(out.get("text", ""))
        found.append(out.get("data", {}).get(mime, ""))
    return "".join(found)


def test_example_notebook_runs(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env_path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path  # the kernel imports this tree's minidumpkit
    child_pid = None
    try:
        client = NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
        code = [c for c in nb.cells if c.cell_type == "code"]
        printed = outputs(code[0], "text/plain") if code else ""
        match = re.search(r"child pid (\d+)", printed)
        if match:
            child_pid = int(match.group(1))
            if Path(f"/proc/{child_pid}").exists() and "child exit status" not in \
                    outputs(code[-1], "text/plain"):
                os.kill(child_pid, signal.SIGKILL)  # the notebook failed before its cleanup
    assert child_pid is not None
    code = [c for c in nb.cells if c.cell_type == "code"]
    dump_html = outputs(code[1], "text/html")
    assert "worker-one" in dump_html and "worker-two" in dump_html
    assert f"pid {child_pid}" in dump_html and "<details" in dump_html
    assert f"requesting thread {child_pid}" in dump_html
    assert "worker-one" in outputs(code[2], "text/html")  # the thread list
    thread_html = outputs(code[3], "text/html")
    assert "“worker-one”" in thread_html and "worker-two" not in thread_html
    modules_html = outputs(code[4], "text/html")
    assert "libc.so.6" in modules_html and "python" in modules_html
    text = outputs(code[5], "text/plain")
    assert f"pid {child_pid}" in text and "child.dmp" in text and "<Memory " in text
    assert all(len(line) < 400 for line in text.splitlines())
    assert (tmp_path / "child.dmp").is_file()
    assert "child exit status -9" in outputs(code[6], "text/plain")
    assert not Path(f"/proc/{child_pid}").exists()  # killed and reaped by the notebook
