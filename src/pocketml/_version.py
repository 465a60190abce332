"""The pocketml version, read by the build backend and ``pocketml --version``."""

__version__ = "0.1.0"
