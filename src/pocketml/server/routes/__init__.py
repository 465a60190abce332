"""The server's routers: ``system`` (health), ``admin`` (/v1/admin), ``packages``, ``ui``."""
