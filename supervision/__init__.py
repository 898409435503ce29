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

__all__ = [
    "ChildFailed",
    "ChildSpec",
    "DynamicSupervisor",
    "ErrorInfo",
    "HealthEntry",
    "HealthRegistry",
    "RestartPolicy",
    "open_dynamic_supervisor",
    "supervise",
]
