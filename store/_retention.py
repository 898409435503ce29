"""Retention: what `Store.prune` deletes, written once for both engines.

Everything older than the cutoff goes, except what the running service still needs: each
account's last order event (its `last_seq`: a seq is never handed out twice), every event the
webhook outbox has not taken yet (after the account's cursor), open orders, batches that are
not final (recovery resumes them) and webhook deliveries still pending. The audit log is kept.
The caller picks a cutoff no later than the start of the current IST day, so the day's replay
and idempotency keys are never touched.
"""

from __future__ import annotations

from brokers.base import FINAL_STATUSES

from ._sql import in_list, sql
from .base import FINAL_BATCH_STATUSES

__all__ = ["PRUNE"]


#: table -> its DELETE; each takes the cutoff (Unix time) as $1.
PRUNE = {
    "order_events": sql(
        "DELETE FROM order_events WHERE created_at < $1"
        " AND seq < (SELECT max(m.seq) FROM order_events m WHERE m.account = order_events.account)"
        " AND NOT EXISTS (SELECT 1 FROM webhook_cursors c"
        "  WHERE c.account = order_events.account AND c.seq < order_events.seq)"),
    "orders": sql(
        f"DELETE FROM orders WHERE updated_at < $1 AND status IN {in_list(FINAL_STATUSES)}"),
    "batches": sql(  # their legs go with them (ON DELETE CASCADE)
        "DELETE FROM batches WHERE updated_at < $1"
        f" AND status IN {in_list(FINAL_BATCH_STATUSES)}"),
    "webhook_outbox": sql(
        "DELETE FROM webhook_outbox WHERE updated_at < $1 AND status <> 'pending'"),
}
