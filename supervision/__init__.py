"""Supervision tree and health registry of one orderdesk process."""

from actors.health import (
    ErrorInfo,
    HealthEntry,
    HealthPolicy,
    HealthRegistry,
    Reason,
    UpstreamWatch,
)

from .supervisor import (
    ChildFailed,
    ChildSpec,
    DynamicSupervisor,
    RestartPolicy,
    open_dynamic_supervisor,
    supervise,
)

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
