"""The server's routers (``system``, ``admin``, ``packages``, ...), and what the console's
pages share with them: the strict JSON route class and the path/query parameter types."""

from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._params import ModelName, NamePrefix

__all__ = ["ModelName", "NamePrefix", "StrictJsonRoute"]

# The ship pages' parameters (rollouts, experiments, the audit log's subject).
from pocketml.server.routes._params import AuditSubject, ExperimentId, RolloutId

__all__ += ["AuditSubject", "ExperimentId", "RolloutId"]
