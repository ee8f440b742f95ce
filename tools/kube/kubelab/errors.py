"""The one error the lab raises: it could not be built, started or reached."""

from __future__ import annotations


class LabError(RuntimeError):
    """The lab could not be built, started or reached."""
