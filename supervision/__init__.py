"""Supervision tree and health registry of one orderdesk process."""

from .health import ErrorInfo, HealthEntry, HealthRegistry
from .supervisor import (
    ChildFailed,
    ChildSpec,
    DynamicSupervisor,
    RestartPolicy,
    open_dynamic_supervisor,
    supervise,
)
from .upstream_watch import HealthPolicy, Reason, UpstreamWatch

__all__ = [
    "ChildFailed",
    "ChildSpec",
    "DynamicSupervisor",
    "ErrorInfo",
    "HealthEntry",
    "HealthPolicy",
    "HealthRegistry",
    "Reason",
    "RestartPolicy",
    "UpstreamWatch",
    "open_dynamic_supervisor",
    "supervise",
]
