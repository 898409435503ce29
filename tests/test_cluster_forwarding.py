"""[cluster] requests on any node, with real processes: three `orderdesk serve` on one Postgres and
one Redis, trading on one paper venue (in the test's process). A batch or order sent to a node
that does not own the account is executed by the owner (forwarded with the cluster's secret) and
answered as the owner answers; an idempotent retry on a third node gets the stored result and the
venue shows every tag placed once. The internal route refuses a request without the secret; bad
input gets the owner's body on any node; a forwarded request that finds its receiver not owning
the account is refused 503, never forwarded again; an owner that is gone answers 503 with
Retry-After, not a hang."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from brokers.paper import VenueAddress
from tests.fixtures_cli import cli_env, orderdesk, running_orderdesk
from tests.fixtures_cluster import (
    CLUSTER_SECRET,
    NODE_LEASE_S,
    bind_of,
    node_client,
    node_config,
    owner_is,
    primary,
)
from tests.fixtures_orders import leg
from tests.fixtures_service import METRICS, TOKENS
from tests.fixtures_venue import (
    BANKNIFTY_FUT,
    NIFTY_FUT,
    kite_http,
    net_positions,
    venue_orders,
)
from tests.fixtures_waits import wait_until
from web.internal import CREDENTIAL_HEADER, INTERNAL_PREFIX

BATCH = {"orders": [leg(NIFTY_FUT, "BUY", 75), leg(BANKNIFTY_FUT, "SELL", 35)],
         "rollback_on_failure": True}


def env_of(tmp_path: Path, venue: VenueAddress) -> dict[str, str]:
    return cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url,
                   ORDERDESK_CLUSTER_SECRET=CLUSTER_SECRET)


async def metric(config: Path, name: str, **labels: str) -> float:
    """The node's /metrics samples `name` with `labels`, summed."""
    async with node_client(config, METRICS) as http:
        text = (await http.get("/metrics")).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name
               and all(sample.labels.get(k) == v for k, v in labels.items()))


async def forwards(config: Path) -> float:
    """The node's forwarded requests the owner answered (any status)."""
    return await metric(config, "orderdesk_forwarded_requests_total")


async def test_a_non_owner_forwards_to_the_owner_and_a_retry_elsewhere_places_nothing_twice(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = env_of(tmp_path, venue)
    a, b, c = (node_config(tmp_path, pg_url, key_prefix, name) for name in "abc")
    with trio.fail_after(90):
        async with (
            kite_http(venue) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a), env=env),
        ):
            assert (await primary(a))["owner"]["state"] == "owner"
            async with (
                running_orderdesk(tmp_path / "b", "serve", "--config", str(b), env=env),
                running_orderdesk(tmp_path / "c", "serve", "--config", str(c), env=env),
                node_client(b) as on_b, node_client(c) as on_c, node_client(a) as on_a,
            ):
                assert (await primary(b))["owner"]["state"] == "standby"
                first = await on_b.post("/accounts/primary/batch-orders", json=BATCH,
                                        headers={"Idempotency-Key": "fwd-1",
                                                 "X-Correlation-ID": "fwd-batch"})
                assert first.status_code == 200, first.text
                result = first.json()
                assert result["status"] == "success", result
                assert first.headers["X-Correlation-ID"] == "fwd-batch"
                retry = await on_c.post("/accounts/primary/batch-orders", json=BATCH,
                                        headers={"Idempotency-Key": "fwd-1"})
                assert retry.status_code == 200, retry.text
                assert (retry.json()["batch_id"], retry.json()["order_ids"]) == (
                    result["batch_id"], result["order_ids"])
                # the same key with another body: the owner's 409, relayed
                other = await on_c.post("/accounts/primary/batch-orders",
                                        json={**BATCH, "rollback_on_failure": False},
                                        headers={"Idempotency-Key": "fwd-1"})
                assert other.status_code == 409, other.text
                assert other.json()["error"] == "idempotency_conflict"

                order = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO",
                         "transaction_type": "BUY", "quantity": 75, "order_type": "LIMIT",
                         "product": "NRML", "price": 20000.0}
                placed = await on_b.post("/accounts/primary/orders", json=order,
                                         headers={"Idempotency-Key": "fwd-2"})
                assert placed.status_code == 200, placed.text
                again = await on_c.post("/accounts/primary/orders", json=order,
                                        headers={"Idempotency-Key": "fwd-2"})
                assert again.json()["order_id"] == placed.json()["order_id"], again.text
                order_id = placed.json()["order_id"]
                # reads only the owner answers, and a cancel, through the other nodes
                async def in_the_book() -> bool:  # once the owner has the venue's push
                    book = await on_c.get("/accounts/primary/orders")
                    assert book.status_code == 200, book.text
                    return order_id in {o["order_id"] for o in book.json()["orders"]}

                await wait_until(in_the_book, "the order in the owner's book, read through c")
                def held(answer: httpx.Response) -> dict[str, int]:  # P&L moves with prices
                    return {p["tradingsymbol"]: p["quantity"] for p in answer.json()["positions"]}

                positions = await on_b.get("/accounts/primary/positions")
                assert positions.status_code == 200, positions.text
                assert held(positions) == held(await on_a.get("/accounts/primary/positions"))
                assert held(positions) == {NIFTY_FUT: 75, BANKNIFTY_FUT: -35}
                modified = await on_b.put(f"/accounts/primary/orders/{order_id}",
                                          json={"price": 20001.0})
                assert modified.status_code == 200, modified.text
                cancelled = await on_c.delete(f"/accounts/primary/orders/{order_id}")
                assert cancelled.status_code == 200, cancelled.text

                tags = Counter(o["tag"] for o in await venue_orders(kite))
                assert tags and max(tags.values()) == 1, tags  # nothing placed twice
                assert len(tags) == 3  # two legs and the single order
                assert await forwards(b) >= 4 and await forwards(c) >= 4
                killed = await on_b.post("/accounts/primary/kill")  # flattens the batch's
                assert killed.status_code == 200, killed.text
                assert await net_positions(kite) == {}
                assert await forwards(a) == 0  # the owner forwarded nothing
                report = await orderdesk(tmp_path, "cluster", "--config", str(b), "--json",
                                         env=env)
                assert report.code == 0, report.stderr
                nodes = report.json()["nodes"]
                assert {n: (row["forwards"], row["advertised"]) for n, row in nodes.items()} == {
                    n: (True, f"http://{bind_of(config)}")
                    for n, config in (("a", a), ("b", b), ("c", c))}


async def test_the_internal_route_needs_the_secret_and_bad_input_answers_alike(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = env_of(tmp_path, venue)
    a, b = (node_config(tmp_path, pg_url, key_prefix, name) for name in "ab")
    internal = f"{INTERNAL_PREFIX}/accounts/primary/orders"
    with trio.fail_after(60):
        async with running_orderdesk(tmp_path / "a", "serve", "--config", str(a), env=env):
            assert (await primary(a))["owner"]["state"] == "owner"
            async with (
                running_orderdesk(tmp_path / "b", "serve", "--config", str(b), env=env),
                node_client(a) as on_a, node_client(b) as on_b,
            ):
                for headers in ({}, {CREDENTIAL_HEADER: "not-the-secret"},
                                {CREDENTIAL_HEADER: ""}):
                    refused = await on_a.post(internal, json={}, headers=headers)
                    assert refused.status_code == 403, refused.text
                    assert refused.json()["error"] == "forbidden"
                assert await metric(a, "orderdesk_forwards_received_total",
                                    result="refused") == 3
                # with the secret: the owner answers (here: the body is invalid, 422)
                inside = await on_a.post(internal, json={},
                                         headers={CREDENTIAL_HEADER: CLUSTER_SECRET})
                assert inside.status_code == 422, inside.text
                # ...but a node that does not own the account never forwards it again
                loop = await on_b.post(internal, json={},
                                       headers={CREDENTIAL_HEADER: CLUSTER_SECRET})
                assert loop.status_code == 503, loop.text
                assert loop.headers["Retry-After"] == "1"
                assert "no longer owned by this node" in loop.json()["message"]
                # only the owner routes are inside; the client's credentials are checked too
                other = await on_a.get(f"{INTERNAL_PREFIX}/admin/actors",
                                       headers={CREDENTIAL_HEADER: CLUSTER_SECRET})
                assert other.status_code == 404, other.text
                async with httpx.AsyncClient(base_url=f"http://{bind_of(a)}") as anonymous:
                    nobody = await anonymous.post(internal, json={},
                                                  headers={CREDENTIAL_HEADER: CLUSTER_SECRET})
                assert nobody.status_code == 401, nobody.text

                orders, batches = "/accounts/primary/orders", "/accounts/primary/batch-orders"
                bad = [(orders, {"tradingsymbol": NIFTY_FUT}, None),
                       (orders, {"quantity": "x"}, None),
                       (orders, b"{not json", "application/json"),
                       (orders, b"[]", "application/json"),
                       (orders, b"{}", "text/plain"),
                       (batches, {"orders": []}, None),
                       (batches, {"orders": [leg(quantity=74)], "execution": "later"}, None)]
                for path, body, content_type in bad:
                    answers = []
                    for http in (on_a, on_b):
                        headers = {"X-Correlation-ID": "same-id"}
                        if content_type is None:
                            answer = await http.post(path, json=body, headers=headers)
                        else:
                            answer = await http.post(path, content=body,
                                                     headers={**headers,
                                                              "Content-Type": content_type})
                        answers.append((answer.status_code, answer.json()))
                    assert answers[0] == answers[1], answers
                    assert 400 <= answers[0][0] < 500, answers
                # the client's token in the query (scripts may): forwarded, never logged
                query = f"/accounts/primary/orders?access_token={TOKENS['primary']}"
                async with httpx.AsyncClient(base_url=f"http://{bind_of(b)}") as script:
                    answer = await script.get(query)
                assert answer.status_code == 200, answer.text
                for node in ("a", "b"):
                    log = (tmp_path / node / "stderr.log").read_text()
                    leaks = [line for line in log.splitlines()
                             if TOKENS["primary"] in line or CLUSTER_SECRET in line]
                    assert not leaks, (node, leaks)
                wrong = httpx.AsyncClient(base_url=f"http://{bind_of(b)}",
                                          headers={"Authorization": "Bearer wrong"})
                async with wrong:
                    refused = await wrong.post("/accounts/primary/orders", json={})
                assert refused.status_code == 401, refused.text  # checked on b, not forwarded
                elsewhere = httpx.AsyncClient(base_url=f"http://{bind_of(b)}", headers={
                    "Authorization": f"Bearer {TOKENS['secondary']}"})
                async with elsewhere:
                    refused = await elsewhere.post("/accounts/primary/orders", json={})
                assert refused.status_code == 403, refused.text


async def test_an_owner_gone_answers_503_with_retry_after_then_the_next_owner_answers(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = env_of(tmp_path, venue)
    a, b, c = (node_config(tmp_path, pg_url, key_prefix, name) for name in "abc")
    with trio.fail_after(90):
        async with running_orderdesk(tmp_path / "a", "serve", "--config", str(a),
                                     env=env) as a_node:
            assert (await primary(a))["owner"]["state"] == "owner"
            async with (
                running_orderdesk(tmp_path / "b", "serve", "--config", str(b), env=env),
                running_orderdesk(tmp_path / "c", "serve", "--config", str(c), env=env),
                node_client(b) as on_b, node_client(c) as on_c,
            ):
                a_node.kill()  # its lease stands for up to NODE_LEASE_S: the owner is a, gone
                await a_node.wait()
                started = trio.current_time()
                gone = await on_b.post("/accounts/primary/batch-orders", json=BATCH,
                                       headers={"Idempotency-Key": "fwd-gone"})
                assert trio.current_time() - started < 2.0  # the connect is refused at once
                assert gone.status_code == 503, gone.text
                assert gone.headers["Retry-After"] == "1"
                assert gone.json()["error"] == "unavailable"

                async def someone_owns() -> bool:
                    return await owner_is(b)() or await owner_is(c)()

                await wait_until(someone_owns, "b or c to take over", NODE_LEASE_S + 10)
                non_owner = on_c if await owner_is(b)() else on_b
                answer = await non_owner.post("/accounts/primary/batch-orders", json=BATCH,
                                              headers={"Idempotency-Key": "fwd-gone"})
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "success", answer.text


async def test_an_owner_paused_mid_request_is_not_waited_for_past_its_lease(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    """The owner SIGSTOPped with forwarded requests in its socket: the forwarder stops waiting
    once the owner's lease is gone (not after its 150 s timeout). A request with an
    Idempotency-Key is not known to be done: 503, retry with the key (or, if the next owner is
    there already, re-sent to it); one without: 502 owner_failed, outcome unknown. Resumed,
    the old owner places nothing (its lease is gone) and the retry places each leg once."""
    env = env_of(tmp_path, venue)
    a, b, c = (node_config(tmp_path, pg_url, key_prefix, name) for name in "abc")
    order = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
             "quantity": 75, "order_type": "LIMIT", "product": "NRML", "price": 20000.0}
    answers: dict[str, httpx.Response] = {}
    with trio.fail_after(90):
        async with (
            kite_http(venue) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a), env=env) as a_node,
        ):
            assert (await primary(a))["owner"]["state"] == "owner"
            async with (
                running_orderdesk(tmp_path / "b", "serve", "--config", str(b), env=env),
                running_orderdesk(tmp_path / "c", "serve", "--config", str(c), env=env),
                node_client(b) as on_b,
            ):
                a_node.send_signal(signal.SIGSTOP)
                started = trio.current_time()
                try:
                    async with trio.open_nursery() as nursery:
                        async def send(name: str, path: str, body: dict, key: str | None
                                       ) -> None:
                            headers = {} if key is None else {"Idempotency-Key": key}
                            answers[name] = await on_b.post(path, json=body, headers=headers)

                        nursery.start_soon(send, "keyed", "/accounts/primary/batch-orders",
                                           BATCH, "fwd-paused")
                        nursery.start_soon(send, "bare", "/accounts/primary/orders", order, None)
                    waited = trio.current_time() - started
                finally:
                    a_node.send_signal(signal.SIGCONT)
                assert waited < NODE_LEASE_S + 3, waited
                assert await metric(b, "orderdesk_forward_errors_total",
                                    reason="owner_failed") == 1
                bare = answers["bare"]
                assert bare.status_code == 502, bare.text
                assert bare.json()["error"] == "owner_failed"
                keyed = answers["keyed"]
                assert keyed.status_code in (200, 503), keyed.text
                if keyed.status_code == 503:
                    assert "same Idempotency-Key" in keyed.json()["message"]
                    assert keyed.headers["Retry-After"] == "1"

                async def retried() -> httpx.Response | None:
                    for config in (b, c):
                        if await owner_is(config)():
                            continue
                        async with node_client(config) as http:
                            answer = await http.post("/accounts/primary/batch-orders",
                                                     json=BATCH,
                                                     headers={"Idempotency-Key": "fwd-paused"})
                        return answer if answer.status_code == 200 else None
                    return None

                answer = await wait_until(retried, "the retry to be answered", 30)
                assert answer.json()["status"] in ("success", "rolled_back"), answer.text
                tags = Counter(o["tag"] for o in await venue_orders(kite))
                assert max(tags.values(), default=1) == 1, tags
