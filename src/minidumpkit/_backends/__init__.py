"""Platform backends. This is the one place that looks at ``sys.platform``."""

from __future__ import annotations

import sys
from types import ModuleType

from ..errors import UnsupportedError


def load_backend() -> ModuleType:
    """Import and return the backend module for this OS (on first use, never at import)."""
    if sys.platform == "linux":
        from . import linux

        return linux
    if sys.platform == "win32":
        from . import windows

        return windows
    raise UnsupportedError(
        f"minidumpkit cannot dump processes on {sys.platform!r}: only Linux (ptrace) "
        "and Windows (dbghelp) have a backend; reading minidumps works everywhere")
