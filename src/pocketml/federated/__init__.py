"""pocketml.federated: the server side of federated learning.

- Aggregators: :func:`fedavg` (sample-weighted), :func:`trimmed_mean` and
  :func:`coordinate_median` (robust to a minority of malicious updates),
  :func:`centered_clipping` and :func:`fltrust` (robust on non-IID clients too).
- DP-FedAvg: :class:`DPFedAvg` (fixed or :class:`AdaptiveClipping`), and
  :class:`PrivacyAccountant` for (ε, δ) after every round (dp-accounting).
- Secure aggregation: :class:`SecAggServer` (the clients' side is ``pocketml.fl``).
- :func:`validate_update` returns an :class:`UpdateRejection` for an update that must be
  refused (the route turns it into a 4xx).
- :class:`FedBuff`: asynchronous buffered aggregation with staleness weighting.
- :func:`run_secagg_round`: a whole SecAgg+ round in memory (tests, benchmarks, docs).
- :func:`simulate`: federated rounds end to end in memory on non-IID client data.
- :class:`FederatedService`: federated tasks on the server (tasks, rounds, device
  participation, SecAgg over HTTP, the result as a candidate version); :class:`TaskSpec`
  (``parse_task_spec``) holds every setting of a task; docs/federated-protocol.md is the wire.

The math the device shares with the server (training a head, clipping, fixed point,
masks, Shamir) is ``pocketml.fl``; docs/federated.md describes the protocol.
"""

from pocketml.federated._accountant import PrivacyAccountant, PrivacySpent
from pocketml.federated._aggregate import (
    centered_clipping,
    coordinate_median,
    fedavg,
    fltrust,
    trimmed_mean,
)
from pocketml.federated._dp import AdaptiveClipping, DPFedAvg, DPRoundResult
from pocketml.federated._fedbuff import FedBuff, FedBuffStep
from pocketml.federated._inmemory import SecAggRoundResult, run_secagg_round
from pocketml.federated._rows import forget_device_rows
from pocketml.federated._secagg_server import SecAggServer
from pocketml.federated._simulate import (
    SimulationConfig,
    SimulationResult,
    simulate,
    split_non_iid,
)
from pocketml.federated._spec import AGGREGATORS, Requirements, TaskSpec, parse_task_spec
from pocketml.federated._validate import UpdateRejection, UpdateRejectReason, validate_update
from pocketml.federated._values import (
    ROUND_STATES,
    TASK_STATES,
    Announcement,
    JoinAnswer,
    RoundInfo,
    SecAggState,
    SignedDocument,
    TaskInfo,
    UploadAnswer,
)
from pocketml.federated.service import FederatedService

__all__ = [
    "AdaptiveClipping",
    "DPFedAvg",
    "DPRoundResult",
    "FedBuff",
    "FedBuffStep",
    "PrivacyAccountant",
    "PrivacySpent",
    "SecAggRoundResult",
    "SecAggServer",
    "SimulationConfig",
    "SimulationResult",
    "UpdateRejectReason",
    "UpdateRejection",
    "centered_clipping",
    "coordinate_median",
    "fedavg",
    "fltrust",
    "run_secagg_round",
    "simulate",
    "split_non_iid",
    "trimmed_mean",
    "validate_update",
]

__all__ += [
    "AGGREGATORS",
    "ROUND_STATES",
    "TASK_STATES",
    "Announcement",
    "FederatedService",
    "JoinAnswer",
    "Requirements",
    "RoundInfo",
    "SecAggState",
    "SignedDocument",
    "TaskInfo",
    "TaskSpec",
    "UploadAnswer",
    "parse_task_spec",
]
__all__ += ["forget_device_rows"]
