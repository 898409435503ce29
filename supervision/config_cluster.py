"""Reading `[cluster]` of orderdesk.toml: the Redis lease's address and timings, this node's id.

A cluster shares one Postgres (the fence: every owner's writes carry its epoch); SQLite is one
process's file, so a cluster on it is refused here, before anything starts.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography.fernet import Fernet

from web.settings import (
    DEFAULT_FORWARD_TIMEOUT_S,
    DEFAULT_LEASE_MARGIN_S,
    DEFAULT_LEASE_S,
    DEFAULT_RENEW_S,
    DEFAULT_SECRET_ENV,
    ClusterSettings,
)

from .config_fields import ConfigError, optional_str, seconds

#: The forwarding secret's least length: guessing it must be out of reach.
MIN_SECRET = 16


def parse_cluster(
    doc: Mapping[str, Any], bind: str, database_url: str, token_key: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ClusterSettings:
    """`[cluster]` (a table) for a node serving on `bind` with the store at `database_url`;
    `token_key`: ORDERDESK_TOKEN_KEY (a Fernet key), if set; `env`: where the forwarding
    secret is read (the variable `secret_env` names)."""
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "cluster: needs a Postgres store ([database] url postgresql://...); "
            "SQLite serves one node only"
        )
    redis_url = optional_str(doc, "redis_url", "cluster")
    if redis_url is None or not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "cluster.redis_url: required, a redis:// (or rediss://, unix://) URL, "
            f"not {redis_url!r}"
        )
    lease_s = seconds(doc, "lease_s", DEFAULT_LEASE_S, "cluster", minimum=0.001)
    renew_s = seconds(doc, "renew_s", min(DEFAULT_RENEW_S, lease_s / 3), "cluster",
                      minimum=0.001)
    margin_s = seconds(doc, "margin_s", min(DEFAULT_LEASE_MARGIN_S, lease_s / 5), "cluster")
    if renew_s + margin_s >= lease_s:
        raise ConfigError(
            f"cluster.renew_s: renew_s + margin_s ({renew_s} + {margin_s}) must be less than "
            f"lease_s ({lease_s}), or the lease lapses between renewals"
        )
    session_check_s = seconds(doc, "session_check_s", 1.0, "cluster", minimum=0.01)
    warm = doc.get("warm_standby", False)
    if not isinstance(warm, bool):
        raise ConfigError(f"cluster.warm_standby: must be true or false, not {warm!r}")
    node_id = optional_str(doc, "node_id", "cluster") or _default_node_id(bind)
    advertised = optional_str(doc, "advertised", "cluster") or _default_advertised(bind)
    prefix = optional_str(doc, "key_prefix", "cluster") or "od"
    if any(c in prefix for c in "{}"):
        raise ConfigError(f"cluster.key_prefix: must not contain braces, not {prefix!r}")
    if token_key:
        try:
            Fernet(token_key.strip().encode())
        except ValueError:
            raise ConfigError(
                "ORDERDESK_TOKEN_KEY: not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with `python -c \"from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())\"` and give every node the same"
            ) from None
    secret_env = optional_str(doc, "secret_env", "cluster") or DEFAULT_SECRET_ENV
    secret = (env or {}).get(secret_env, "").strip()
    if secret and len(secret) < MIN_SECRET:
        raise ConfigError(f"{secret_env}: the cluster's forwarding secret must be at least "
                          f"{MIN_SECRET} characters (give every node the same)")
    forward_timeout_s = seconds(doc, "forward_timeout_s", DEFAULT_FORWARD_TIMEOUT_S, "cluster",
                                minimum=0.001)
    weight = _positive(doc, "weight", 1.0)
    handoffs_per_s = _positive(doc, "handoffs_per_s", 5.0)
    drain_s = seconds(doc, "drain_s", 10.0, "cluster")
    return ClusterSettings(
        redis_url=redis_url, node_id=node_id, advertised=advertised, lease_s=lease_s,
        renew_s=renew_s, margin_s=margin_s, key_prefix=prefix, session_check_s=session_check_s,
        token_key=(token_key or "").strip(), secret=secret, secret_env=secret_env,
        forward_timeout_s=forward_timeout_s, warm_standby=warm, weight=weight,
        handoffs_per_s=handoffs_per_s, drain_s=drain_s,
    )


def _positive(doc: Mapping[str, Any], key: str, default: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"cluster.{key}: must be a number > 0, not {value!r}")
    return float(value)


def rebound(cluster: ClusterSettings, old_bind: str, new_bind: str) -> ClusterSettings:
    """`cluster` for a node serving on `new_bind` (`serve --bind`): a node id and address
    that were defaults follow the bind; ones the file gave stay."""
    changes = {}
    if cluster.node_id == _default_node_id(old_bind):
        changes["node_id"] = _default_node_id(new_bind)
    if cluster.advertised == _default_advertised(old_bind):
        changes["advertised"] = _default_advertised(new_bind)
    return attrs.evolve(cluster, **changes)


def _default_node_id(bind: str) -> str:
    """host:port: unique per node, as no two processes of a host serve on one port."""
    return f"{socket.gethostname()}:{bind.rpartition(':')[2]}"


def _default_advertised(bind: str) -> str:
    host, _, port = bind.rpartition(":")
    return f"http://{_reachable(host)}:{port}"


def _reachable(host: str) -> str:
    """A wildcard bind is advertised under the host's name."""
    return socket.gethostname() if host in ("", "0.0.0.0", "[::]", "::") else host
