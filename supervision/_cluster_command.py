"""`orderdesk cluster`: the cluster as Redis and Postgres see it, without asking any node.

It reads the `[cluster]` of the configuration (--config / ORDERDESK_CONFIG): the nodes that
announced themselves in Redis (alive: seen within one lease time; `forwards`: it sends requests
for accounts it does not own to their owner, else it refuses them 503, having no shared secret),
each configured account's lease holder and what is left of its lease, and from Postgres the
epoch and the node that last claimed it (when, hence the lease's age); the accounts each node
owns and the handoffs in progress (an account moving to the node it is placed on). Exit status as
`status`: 0 every account has a live owner, 1 degraded (an account without an owner, its owner
not alive, or Redis and Postgres disagreeing on it: a takeover under way), 2 Redis or Postgres
unreachable (or no [cluster]).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ._admin_client import EXIT_DEGRADED, EXIT_OK, EXIT_UNREACHABLE
from .config_fields import ConfigError
from .settings import load_settings


def run_cluster(args: argparse.Namespace) -> int:
    import trio_asyncio

    settings = load_settings(getattr(args, "config", None))
    if settings.cluster is None:
        raise ConfigError("cluster: no [cluster] table in the configuration (a single node)")
    accounts = [a.id for a in settings.accounts]
    report = trio_asyncio.run(_gather, settings.cluster, settings.database_url, accounts)
    if isinstance(report, str):  # what could not be reached
        print(f"orderdesk: {report}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _render(report)
    return EXIT_OK if report["ok"] else EXIT_DEGRADED


async def _gather(cluster: Any, database_url: str, accounts: list[str]) -> dict[str, Any] | str:
    """The report, or one line saying which of Redis and Postgres does not answer."""
    from store import StoreError, account_owners

    from .lease import REDIS_ERRORS, open_leases, redis_address

    failed: BaseException | None = None
    try:
        async with open_leases(cluster) as leases:
            nodes = await leases.nodes()
            holders = {a: await leases.holder(a) for a in accounts}
            handoffs = await leases.client.hgetall(leases.handoffs_key)
    except* REDIS_ERRORS as group:  # the client's own task group may wrap it
        failed = group.exceptions[0]
    if failed is not None:
        return f"cannot reach Redis at {redis_address(cluster.redis_url)}: {failed}"
    try:
        owners = {o["account"]: o for o in await account_owners(database_url)}
    except StoreError as exc:
        return str(exc)
    report = _report(cluster.lease_s, nodes, holders, owners)
    report["handoffs"] = _handoffs(handoffs, holders)
    return report


def _handoffs(listed: dict[str, str], holders: dict[str, tuple[str | None, float | None]]
              ) -> dict[str, dict[str, Any]]:
    """The handoffs in progress: listed by their owner while it drains, and the leases given
    to a node that has not taken them yet."""
    from .lease import HANDOFF

    found: dict[str, dict[str, Any]] = {}
    for account, value in listed.items():
        try:
            found[account] = {"stage": "draining", **json.loads(value)}
        except ValueError:
            continue
    for account, (holder, _) in holders.items():
        if holder is not None and holder.startswith(HANDOFF):
            found[account] = {"stage": "released", "to": holder.removeprefix(HANDOFF)}
    return found


def _report(lease_s: float, nodes: dict[str, dict[str, Any]],
            holders: dict[str, tuple[str | None, float | None]],
            owners: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from .lease import HANDOFF

    now = time.time()
    node_rows = {
        node: {"advertised": seen.get("advertised"),
               "forwards": bool(seen.get("forwards")),
               "last_seen_s": round(now - float(seen.get("seen_at", 0)), 3),
               "alive": now - float(seen.get("seen_at", 0)) <= lease_s}
        for node, seen in sorted(nodes.items())
    }
    account_rows: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for account, (holder, left_s) in holders.items():
        owner = owners.get(account) or {}
        claimed_by = owner.get("node")
        row = {
            "owner": holder,
            "lease_left_s": left_s,
            "epoch": owner.get("epoch"),
            "claimed_by": claimed_by,
            "lease_age_s": (round(now - float(owner["acquired_at"]), 3)
                            if holder is not None and claimed_by == holder else None),
            "owner_alive": bool(holder is not None and node_rows.get(holder, {}).get("alive")),
        }
        if holder is not None and holder.startswith(HANDOFF):
            pass  # a handoff under way: listed in `handoffs`
        elif holder is None:
            problems.append(f"{account}: no owner")
        elif not row["owner_alive"]:
            problems.append(f"{account}: owner {holder} not alive")
        elif claimed_by != holder:
            problems.append(f"{account}: {holder} holds the lease, {claimed_by} the epoch")
        account_rows[account] = row
    for node, row in node_rows.items():
        row["accounts"] = sum(1 for a in account_rows.values() if a["owner"] == node)
    return {"ok": not problems, "problems": problems, "nodes": node_rows,
            "accounts": account_rows}


def _render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    nodes = Table(title="nodes", title_justify="left")
    for column in ("node", "address", "accounts", "alive", "last seen", "forwards"):
        nodes.add_column(column)
    for node, row in report["nodes"].items():
        nodes.add_row(node, str(row["advertised"] or "-"), str(row["accounts"]),
                      Text("yes", style="green") if row["alive"] else Text("no", style="red"),
                      f"{row['last_seen_s']:.1f}s ago",
                      "yes" if row["forwards"] else Text("no (503)", style="yellow"))
    accounts = Table(title="accounts", title_justify="left")
    for column in ("account", "owner", "lease left", "lease age", "epoch"):
        accounts.add_column(column)
    for account, row in report["accounts"].items():
        owner = row["owner"]
        style = "green" if owner and row["owner_alive"] else "red"
        accounts.add_row(
            account, Text(owner or "none", style=style),
            "-" if row["lease_left_s"] is None else f"{row['lease_left_s']:.1f}s",
            "-" if row["lease_age_s"] is None else f"{row['lease_age_s']:.1f}s",
            "-" if row["epoch"] is None else str(row["epoch"]),
        )
    console.print(nodes)
    console.print(accounts)
    if report["handoffs"]:
        handoffs = Table(title="handoffs in progress", title_justify="left")
        for column in ("account", "from", "to", "stage"):
            handoffs.add_column(column)
        for account, row in report["handoffs"].items():
            handoffs.add_row(account, str(row.get("from", "-")), str(row.get("to", "-")),
                             row["stage"])
        console.print(handoffs)
    overall = Text("ok", style="bold green") if report["ok"] else Text(
        "degraded: " + "; ".join(report["problems"]), style="bold red")
    console.print(Text("overall: ") + overall)
