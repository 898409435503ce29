"""[cluster] the stream reader's own XREAD connection on the real Redis: entries of several
streams, nothing within the BLOCK, a reply larger than one read, the URL's db, an error reply,
no answer in time, and a connection closed or refused (made again by the next call)."""

from __future__ import annotations

import coredis
import pytest
import trio

from supervision.xread_connection import XReadConnection
from tests.fixtures_cluster import REDIS_URL, redis_proxy


async def test_entries_of_several_streams_and_none_within_the_block(key_prefix: str) -> None:
    keys = [f"{{{key_prefix}:acct:a}}:updates", f"{{{key_prefix}:acct:b}}:updates"]
    big = "x" * 100_000  # a reply of several reads
    async with coredis.Redis.from_url(REDIS_URL, decode_responses=True) as redis:
        for seq in (1, 2, 3):
            await redis.xadd(keys[0], {"m": f"a{seq}"}, identifier=f"{seq}-0")
        await redis.xadd(keys[1], {"m": big}, identifier="7-0")
        xread = XReadConnection(REDIS_URL)
        with trio.fail_after(10):
            found = await xread.xread({keys[0]: "1-0", keys[1]: "0-0"}, 10, 100)
            assert found == {keys[0]: [("2-0", "a2"), ("3-0", "a3")], keys[1]: [("7-0", big)]}
            assert await xread.xread({keys[0]: "3-0", keys[1]: "7-0"}, 10, 50) == {}
            assert await xread.xread({keys[0]: "0-0"}, 1, 50) == {keys[0]: [("1-0", "a1")]}
            assert xread.connects == 1  # one connection for every call
            await xread.aclose()
            assert await xread.xread({keys[0]: "2-0"}, 1, 50) == {keys[0]: [("3-0", "a3")]}
            assert xread.connects == 2
            await xread.aclose()


async def test_the_urls_db_and_an_error_reply(key_prefix: str) -> None:
    key = f"{{{key_prefix}:acct:a}}:updates"
    async with coredis.Redis.from_url("redis://127.0.0.1:6379/3", decode_responses=True) as db3:
        try:
            await db3.xadd(key, {"m": "in db 3"}, identifier="1-0")
            xread = XReadConnection("redis://127.0.0.1:6379/3")
            with trio.fail_after(10):
                assert await xread.xread({key: "0-0"}, 1, 50) == {key: [("1-0", "in db 3")]}
                with pytest.raises(coredis.exceptions.ResponseError, match="(?i)invalid"):
                    await xread.xread({key: "not-an-id"}, 1, 50)
                await xread.aclose()
        finally:
            await db3.delete([key])


async def test_a_password_is_sent(key_prefix: str) -> None:
    """(The test Redis has no password: it refuses AUTH; the connection is not kept.)"""
    xread = XReadConnection("redis://:secret@127.0.0.1:6379/0")
    with trio.fail_after(10):
        for tries in (1, 2):
            with pytest.raises(coredis.exceptions.ResponseError, match="AUTH"):
                await xread.xread({f"{{{key_prefix}:acct:a}}:updates": "0-0"}, 1, 50)
            assert xread.connects == tries


async def test_no_answer_in_time_drops_the_connection(key_prefix: str) -> None:
    key = f"{{{key_prefix}:acct:a}}:updates"
    async with redis_proxy() as proxy:
        xread = XReadConnection(proxy.url)
        with trio.fail_after(10):
            assert await xread.xread({key: "0-0"}, 1, 10) == {}
            proxy.freeze()  # a partition: nothing passes, the connection stays open
            with pytest.raises(ConnectionError, match="no answer to XREAD"):
                await xread.xread({key: "0-0"}, 1, 10)
            proxy.thaw()
            assert await xread.xread({key: "0-0"}, 1, 10) == {}
            assert xread.connects == 2
            await xread.aclose()
