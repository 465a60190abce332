"""pocketml.sim: bad networks and fleets of virtual devices, for tests and capacity planning.

- :class:`SimulatedTransport` / :class:`AsyncSimulatedTransport` wrap a real httpx
  transport with latency, jitter, packet loss, lost answers, cut bodies, bandwidth limits
  and outage windows, on a simulated clock (:class:`SimClock`) so nothing really sleeps;
  named profiles ``wifi``, ``4g``, ``3g``, ``lossy``, ``offline``; one seed per run.
- :func:`make_fleet` / :func:`run_fleet` run many real ``pocketml.device.Device`` objects
  (different classes, formats and networks) against a server and report what they saw.
- :func:`write_demo_build` writes a small deterministic digits build to push.

``pocketml simulate --devices 20 --network lossy`` is the CLI front end.
"""

from pocketml.sim._demo import (
    DEMO_MODEL,
    centroids,
    demo_inputs,
    fetch_schema,
    inputs_for_schema,
    write_demo_build,
)
from pocketml.sim._fleet import DeviceResult, FleetReport, VirtualDevice, make_fleet, run_fleet
from pocketml.sim._network import (
    PROFILES,
    AsyncSimulatedTransport,
    NetworkProfile,
    SimClock,
    SimulatedTransport,
    profile,
)

__all__ = [
    "DEMO_MODEL",
    "PROFILES",
    "AsyncSimulatedTransport",
    "DeviceResult",
    "FleetReport",
    "NetworkProfile",
    "SimClock",
    "SimulatedTransport",
    "VirtualDevice",
    "centroids",
    "demo_inputs",
    "fetch_schema",
    "inputs_for_schema",
    "make_fleet",
    "profile",
    "run_fleet",
    "write_demo_build",
]
