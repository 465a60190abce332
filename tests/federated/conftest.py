"""The service-level fixtures of ``test_service.py`` (a registry per database, an app
with a federatable model), shared with the other service test files of this folder."""

from federated.test_service import registry, world

__all__ = ["registry", "world"]
