"""The Windows end-to-end suite under Wine (a package, so its conftest does not shadow tests/conftest.py)."""
