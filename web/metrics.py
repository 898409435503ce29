"""Prometheus metrics of one process, in a registry of their own (never the global one).

Hot paths only touch pre-bound children (`.labels(...)` is looked up once per connection, not per
message). State that others own — upstream state, reconnect and restart counts — is read at
scrape time by a collector instead of being pushed on every change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .actor_status import read_status

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_CONNECTION_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
_BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _ActorLike(Protocol):
    account: str

    def status(self) -> dict[str, Any]: ...


class _HealthLike(Protocol):
    def snapshot(self) -> list[dict[str, Any]]: ...


class Metrics:
    """Every metric of orderdesk (issue 6), owned by one `CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "http_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.websocket_connections = Gauge(
            "websocket_connections", "Open websocket subscribers", ["account"], registry=r
        )
        self.websocket_duration = Histogram(
            "websocket_connection_duration_seconds",
            "How long websocket subscribers stayed connected",
            buckets=_CONNECTION_BUCKETS,
            registry=r,
        )
        self.order_updates = Counter(
            "order_updates_total", "Order updates committed and fanned out", ["account"],
            registry=r,
        )
        self.fanout_latency = Histogram(
            "fanout_latency_seconds",
            "Time to write one frame of order updates to a subscriber (sampled 1 in 16)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_orders = Counter(
            "batch_orders_total", "Batches processed, by final status", ["status"], registry=r
        )
        self.batch_duration = Histogram(
            "batch_duration_seconds", "Batch duration", buckets=_BATCH_BUCKETS, registry=r
        )
        self.store_write_duration = Histogram(
            "store_write_duration_seconds",
            "One store write attempt of a batch (legs, reverse orders, status); failed included",
            buckets=(*_LATENCY_BUCKETS, 5.0, 10.0),
            registry=r,
        )
        self.batches_refused = Counter(
            "batches_refused_total", "Batches refused before anything was placed (503 "
            "overloaded), by reason", ["reason"], registry=r,
        )
        self.late_orders = Counter(
            "orderdesk_late_orders", "Orders that reached the broker with the tag of a leg "
            "recovery had concluded NOT_PLACED (each undone, see the batch)", ["account"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "webhook_deliveries_total", "Webhook delivery attempts", ["result"], registry=r
        )
        self.forwards = Counter(
            "orderdesk_forwarded_requests_total", "[cluster] Requests for accounts another node "
            "owns, answered by the owner, by its status", ["method", "route", "status"],
            registry=r,
        )
        self.forward_errors = Counter(
            "orderdesk_forward_errors_total", "[cluster] Requests for accounts another node owns "
            "not answered by the owner (unavailable: none known or it does not answer, 503; "
            "owner_failed: it failed mid-request, 502)", ["route", "reason"], registry=r,
        )
        self.forward_duration = Histogram(
            "orderdesk_forward_duration_seconds", "[cluster] A forwarded request, from the "
            "owner lookup to its answer", ["method", "route"], buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.forwards_received = Counter(
            "orderdesk_forwards_received_total", "[cluster] Requests other nodes forwarded "
            "here (refused: without the cluster's credential)", ["result"], registry=r,
        )
        self._sources = _SourcesCollector()
        r.register(self._sources)

    def observe(
        self,
        actors: Callable[[], Iterable[_ActorLike]] | Mapping[str, _ActorLike],
        health: _HealthLike | None = None,
        cluster: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """Read upstream state, reconnects and restarts (and [cluster] ownership) from these at
        every scrape."""
        self._sources.actors = actors.values if isinstance(actors, Mapping) else actors
        self._sources.health = health
        self._sources.cluster = cluster

    def on_update(self, account: str, seq: int, payload: object) -> None:
        """Fits `AccountActor(on_update=...)`: counts committed updates per account."""
        self.order_updates.labels(account).inc()

    def late_order(self, account: str) -> None:
        """Fits `BatchCoordinator(on_late=...)`: counts late orders per account."""
        self.late_orders.labels(account).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _SourcesCollector(Collector):
    """Scrape-time view of state owned by actors and the health registry."""

    def __init__(self) -> None:
        self.actors: Callable[[], Iterable[_ActorLike]] | None = None
        self.health: _HealthLike | None = None
        self.cluster: Callable[[], Mapping[str, Any]] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # samples depend on the configured accounts: describe nothing up front

    def collect(self) -> Iterable[Metric]:
        connected = GaugeMetricFamily(
            "upstream_connected", "1 when the account's upstream is connected", labels=["account"]
        )
        reconnects = CounterMetricFamily(
            "upstream_reconnects", "Upstream reconnects", labels=["account"]
        )
        restarts = CounterMetricFamily("actor_restarts", "Supervised restarts", labels=["actor"])
        conflicts = CounterMetricFamily(
            "orderdesk_order_conflicts",
            "Order updates not applied: a known order id with other fixed fields (another order)",
            labels=["account"],
        )
        for actor in self.actors() if self.actors is not None else ():
            status = read_status(actor)
            if status is None:  # a scrape must never fail because one actor misbehaves
                continue
            account = str(status.get("account", getattr(actor, "account", "?")))
            connected.add_metric([account], 1.0 if status.get("upstream") == "connected" else 0.0)
            reconnects.add_metric([account], float(status.get("reconnects") or 0))
            conflicts.add_metric([account], float(status.get("order_conflicts") or 0))
        if self.health is not None:
            for entry in self.health.snapshot():
                restarts.add_metric([str(entry["name"])], float(entry.get("restarts") or 0))
        return [connected, reconnects, restarts, conflicts, *self._cluster()]

    def _cluster(self) -> list[Metric]:
        """[cluster]: ownership per account and the node's lease renewals (none otherwise)."""
        if self.cluster is None:
            return []
        counters = self.cluster()
        owner = GaugeMetricFamily("orderdesk_cluster_owner",
                                  "1 when this node owns the account", labels=["account"])
        per_account = {
            name: CounterMetricFamily(f"orderdesk_cluster_{name}", text, labels=["account"])
            for name, text in (
                ("takeovers", "Times this node took the account over"),
                ("step_downs", "Times this node stopped owning the account"),
                ("calls_fenced", "Broker writes not sent: not the owner, or the lease ends first"),
                ("fenced_out", "Store writes refused by epoch: another node claimed the account"),
            )
        }
        per_account.update({
            name: CounterMetricFamily(f"orderdesk_cluster_{name}", text, labels=["account"])
            for name, text in (
                ("stream_appends", "Updates this node appended to the account's stream"),
                ("stream_append_errors", "Stream appends that failed (tried again)"),
                ("stream_fills", "Times the stream lacked seqs and was filled from the store"),
                ("stream_deliveries", "Updates delivered from the account's stream to "
                                      "subscribers on this node (cross-node deliveries)"),
            )
        })
        lag = GaugeMetricFamily("orderdesk_cluster_stream_append_lag_seconds",
                                "How long the oldest update not yet in the stream has waited",
                                labels=["account"])
        for account, values in counters["accounts"].items():
            owner.add_metric([account], 1.0 if values["owner"] else 0.0)
            lag.add_metric([account], float(values.get("stream_append_lag_s", 0.0)))
            for name, family in per_account.items():
                family.add_metric([account], float(values.get(name, 0)))
        rounds = CounterMetricFamily("orderdesk_cluster_renewal_rounds",
                                     "Lease renewal rounds (every lease of this node in one)")
        rounds.add_metric([], float(counters["renewal_rounds"]))
        failed = CounterMetricFamily("orderdesk_cluster_renewal_failed_rounds",
                                     "Lease renewal rounds that failed as a whole")
        failed.add_metric([], float(counters["renewal_failed_rounds"]))
        handoffs = []
        for name, kind, text in (
            ("handoffs_started", CounterMetricFamily, "Accounts this node began to hand off to "
                                                      "the node they are placed on"),
            ("handoffs_done", CounterMetricFamily, "Handoffs that ended with the lease given "
                                                   "to the placed node"),
            ("handoff_drain_timeouts", CounterMetricFamily, "Handoffs that stepped down with "
                                                            "batches still running"),
            ("handoffs_in_progress", GaugeMetricFamily, "Handoffs under way on this node"),
        ):
            family = kind(f"orderdesk_cluster_{name}", text)
            family.add_metric([], float(counters.get(name, 0)))
            handoffs.append(family)
        return [owner, lag, *per_account.values(), rounds, failed, *handoffs]
