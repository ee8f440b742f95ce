"""Every test's simulated clusters check their own store: after each write, the world read
back must equal the writing process's copy (``simstore.VERIFY``; CLI subprocesses inherit it)."""

import os

from migrate.backends.simstore import VERIFY

os.environ[VERIFY] = "1"
