"""[cluster]: the day's broker access tokens, kept sealed in Postgres for every node.

`orderdesk credentials` (and the daily login) reach one node; the account may be owned by
another, or taken over later by a node that never saw the token. So with [cluster] the node
that receives a token seals it with Fernet (the key from ORDERDESK_TOKEN_KEY, the same on every
node; the store never sees it) and keeps it in `access_tokens` before loading it; a node that
takes an account over loads the sealed token from there, and an owner parked in auth_expired
looks for a newer one every `renew_s`. Without the key, a token is refused (a token only one
node knows would be lost at the next takeover).
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio
from cryptography.fernet import Fernet, InvalidToken

from actors.account import AccountActor
from store import StoreError
from web.credentials import TokensNotShared

log = logging.getLogger("orderdesk.cluster")

#: A sealed token older than this is not loaded: Kite's access tokens last one day.
TOKEN_TTL_S = 24 * 3600


class SealedTokens(Protocol):
    """What the vault needs of the store (the Postgres engine)."""

    async def save_access_token(self, account: str, sealed: str, node: str) -> None: ...
    async def load_access_token(self, account: str) -> str | None: ...


class TokenVault:
    """Seal, keep and load the access tokens of one cluster's accounts."""

    def __init__(self, store: SealedTokens, key: str, node: str) -> None:
        self._store = store
        self._fernet = Fernet(key.encode()) if key else None
        self._node = node

    async def keep(self, account: str, token: str) -> None:
        """Keep `token` for every node; TokensNotShared when it cannot be (no key, the store
        failed): then the caller loads nothing."""
        if self._fernet is None:
            raise TokensNotShared(
                "this node cannot share access tokens with the other nodes of its cluster: "
                "ORDERDESK_TOKEN_KEY is not set (every node needs the same Fernet key); "
                "nothing was loaded")
        sealed = self._fernet.encrypt(token.encode()).decode()
        try:
            await self._store.save_access_token(account, sealed, self._node)
        except StoreError as exc:
            raise TokensNotShared(f"the store did not keep the access token ({exc}); "
                                  "nothing was loaded") from exc

    async def fetch(self, account: str) -> str | None:
        """The token kept for `account` (None: none, older than a day, or not readable with
        this node's key: the node keeps the one it has)."""
        if self._fernet is None:
            return None
        sealed = await self._store.load_access_token(account)
        if sealed is None:
            return None
        try:
            return self._fernet.decrypt(sealed.encode(), ttl=TOKEN_TTL_S).decode()
        except InvalidToken:
            log.warning("account %s: the access token kept in the store is older than a day "
                        "or sealed with another ORDERDESK_TOKEN_KEY: not loaded", account)
            return None


class AccountTokens:
    """One account's kept token, as this node last loaded it into the account's actor."""

    def __init__(self, vault: TokenVault, actor: AccountActor) -> None:
        self._vault = vault
        self._actor = actor
        self._loaded: str | None = None

    async def load(self) -> bool:
        """Load the kept token into the actor if it is not the one last loaded; True if so.
        A store that fails is logged: the actor keeps the token it has."""
        account = self._actor.account
        try:
            token = await self._vault.fetch(account)
        except StoreError as exc:
            log.warning("account %s: the kept access token could not be read: %s", account, exc)
            return False
        if token is None or token == self._loaded:
            return False
        self._loaded = token
        self._actor.set_access_token(token)
        log.warning("account %s: access token loaded from the store", account)
        return True

    async def follow(self, every_s: float) -> None:
        """While the actor is parked in auth_expired, look for a newer kept token every
        `every_s` (one loaded on another node), until cancelled."""
        while True:
            await trio.sleep(every_s)
            if self._actor.upstream.state == "auth_expired":
                await self.load()
