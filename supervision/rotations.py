"""Client token rotations, kept in the store: a rotated token stays rotated.

`PUT /admin/accounts/<id>/tokens/<name>` (and `orderdesk rotate-token`) keeps the new value's
digest in the store before the node that took the request applies it. Every node applies what
the store keeps when it starts (a restart does not bring a rotated-away value back), and with
[cluster] each node reads the store again every `session_check_s`, so a token rotated on one
node is refused on every node within that time (sessions and tickets of it end at once: they
are shared through Redis).
"""

from __future__ import annotations

import logging

import trio

from store import Store, StoreError
from web import Authenticator
from web.settings import Settings

log = logging.getLogger("orderdesk.tokens")


async def open_authenticator(settings: Settings, store: Store) -> Authenticator:
    """The web front's authenticator, with the rotations the store keeps applied."""
    auth = Authenticator(settings)
    changed = auth.apply(await store.token_rotations())
    if changed:
        log.info("%d client token(s) carry the value of a rotation kept in the store", changed)
    return auth


async def follow_rotations(
    store: Store, auth: Authenticator, every_s: float,
    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """[cluster]: apply the rotations other nodes keep, every `every_s`. A store that does not
    answer is logged and asked again: the tokens keep the values they have meanwhile."""
    task_status.started()
    while True:
        await trio.sleep(every_s)
        try:
            changed = auth.apply(await store.token_rotations())
        except StoreError as exc:
            log.warning("token rotations could not be read: %s; asking again", exc)
            continue
        if changed:
            log.info("%d client token(s) rotated on another node: the old value is refused "
                     "here too", changed)
