"""Analysis over a read minidump (see docs/threads.md for thread states and lock waits)."""
