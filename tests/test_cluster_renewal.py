"""[cluster] renewal in rounds: one Redis round renews every lease a node holds (50 accounts on
one node, in process), a lost key is told to its owner alone, and a failed round (Redis cut
off by a frozen proxy) steps every account down at its own deadline, before Redis expires it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import coredis
import trio

from supervision.lease import open_leases
from supervision.service import Running
from tests.fixtures_cluster import REDIS_URL, cluster_settings, cluster_toml, redis_proxy
from tests.fixtures_service import open_test_service
from tests.fixtures_waits import wait_until

ACCOUNTS = [f"many{i:02d}" for i in range(48)] + ["primary", "secondary"]  # 50


def many_accounts_toml() -> str:
    return "".join(f'\n[[accounts]]\nid = "{a}"\nbroker = "paper"\n'
                   f'tokens = [{{ name = "{a}-desk", token = "{a}-secret" }}]\n'
                   for a in ACCOUNTS[:-2])


def owners_in(running: Running, state: str) -> bool:
    assert running.cluster is not None
    return all(o.state == state for o in running.cluster.owners.values())


async def test_renew_all_answers_per_key(key_prefix: str) -> None:
    with trio.fail_after(10):
        async with (open_leases(cluster_settings(key_prefix, "a")) as a,
                    open_leases(cluster_settings(key_prefix, "b")) as b):
            mine = [await a.acquire(f"acc{i}") for i in range(3)]
            assert all(lease is not None for lease in mine)
            leases = [lease for lease in mine if lease is not None]
            await a.release(leases[1])  # gone from a, taken by b: a's renewal must not extend it
            assert await b.acquire("acc1") is not None
            before = [lease.deadline for lease in leases]
            await trio.sleep(0.05)  # the round's send time is later than the acquisitions'
            rounds = a.calls["renew_round"]
            leases[1].released = False  # as if a had lost it without knowing
            assert await a.renew_all(leases) == [True, False, True]
            assert a.calls["renew_round"] == rounds + 1 and a.calls["renew"] == 0
            assert leases[0].deadline > before[0] and leases[2].deadline > before[2]
            assert leases[0].renewed_at == leases[2].renewed_at  # one round, one send time
            assert leases[1].lost.is_set() and not leases[0].lost.is_set()
            assert (await b.holder("acc1"))[0] == "b"
            # an error for one key alone (not a string there): that lease is not known, the
            # others renew in the same round
            async with coredis.Redis.from_url(REDIS_URL, decode_responses=True) as redis:
                await redis.delete([leases[2].key])
                await redis.hset(leases[2].key, {"not": "a lease"})
            deadline = leases[2].deadline
            await trio.sleep(0.05)
            assert await a.renew_all([leases[0], leases[2]]) == [True, None]
            assert leases[2].deadline == deadline and not leases[2].lost.is_set()


async def test_one_round_serves_every_account_and_a_failed_round_steps_each_down_in_time(
    aio_loop: Any, tmp_path: Path, pg_url: str, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with (
            redis_proxy() as proxy,
            open_test_service(tmp_path, database=pg_url, extra_toml=cluster_toml(
                # margin 1.5 s: stopping 50 actors after their deadline takes a loaded machine
                # longer than 0.5 s, and the keys must still be a's in Redis when all have
                cluster_settings(key_prefix, "a", url=proxy.url, lease_s=3.0, renew_s=0.3,
                                 margin_s=1.5)) + many_accounts_toml()) as a,
            coredis.Redis.from_url(REDIS_URL, decode_responses=True) as redis,
        ):
            cluster = a.cluster
            assert cluster is not None and sorted(cluster.owners) == sorted(ACCOUNTS)
            await wait_until(lambda: owners_in(a, "owner"), "a to own all 50 accounts", 20)
            calls, rounds = cluster.leases.calls.copy(), cluster.renewer.rounds
            await wait_until(lambda: cluster.renewer.rounds >= rounds + 3, "3 renewal rounds")
            spent = cluster.leases.calls - calls
            # 3+ rounds for 50 accounts: one Redis round trip each, no per-account renewal
            assert spent["renew"] == 0 and spent["acquire"] == 0, spent
            assert spent["renew_round"] == cluster.renewer.rounds - rounds, spent
            leases = {acc: o.lease for acc, o in cluster.owners.items()}
            assert len({lease.renewed_at for lease in leases.values() if lease}) == 1
            assert cluster.renewer.statistics()["held"] == 50
            # another node holds one key: that owner alone steps down, the round goes on
            one = cluster.owners["many00"]
            await redis.set(cluster.leases.key("many00"), "intruder", px=800)
            await wait_until(lambda: one.state == "standby", "many00 to step down", 5)
            assert "lease lost" in (one.last_step_down or "")
            assert sum(o.state == "owner" for o in cluster.owners.values()) == 49
            await wait_until(lambda: owners_in(a, "owner"), "a to take many00 again", 10)
            leases = {acc: o.lease for acc, o in cluster.owners.items()}

            proxy.freeze()  # every later round fails (times out); nobody may act past its deadline
            last_deadline = {acc: lease.deadline for acc, lease in leases.items() if lease}
            stepped_late: dict[str, float] = {}

            def look() -> bool:
                now = trio.current_time()
                for acc, owner in cluster.owners.items():
                    if acc in stepped_late:
                        continue
                    lease = leases[acc]
                    if owner.state == "owner" and lease is not None:
                        last_deadline[acc] = lease.deadline
                    else:
                        stepped_late[acc] = now - last_deadline[acc]
                return len(stepped_late) == len(ACCOUNTS)

            await wait_until(look, "every account to step down", 10, poll_s=0.005)
            async with redis.pipeline(transaction=False) as pipe:
                for acc in ACCOUNTS:
                    pipe.pttl(cluster.leases.key(acc))
            assert all(ttl > 0 for ttl in pipe.results or ()), pipe.results  # Redis: still a's
            assert min(stepped_late.values()) >= 0, stepped_late  # none before its deadline
            assert all("lease expired" in (o.last_step_down or "")
                       for o in cluster.owners.values())
            assert cluster.renewer.failed_rounds >= 1
            proxy.thaw()
            await wait_until(lambda: owners_in(a, "owner"), "a to own them again", 15)
