"""Moved to ``pocketml.runtime`` (the device SDK and the server need it without convert).

Kept so imports of ``pocketml.convert.runtime`` keep working.
"""

from pocketml.runtime import RUNNABLE_FORMATS, Runner, open_runner

__all__ = ["RUNNABLE_FORMATS", "Runner", "open_runner"]
