"""Credentials of the venue's accounts (their request limits: limits.py).

api_key is `paper` for all; account `<id>` starts with access token `paper-<id>`. Expiring a token
leaves the account with none until `issue()` hands out `paper-<id>-<n>` (the previous token then
stops working). A token of an id the venue was not configured with is refused like a wrong one.
"""

from __future__ import annotations

from .errors import VenueError, token_error

API_KEY = "paper"
KITE_VERSION = "3"


class Accounts:
    def __init__(self, ids: tuple[str, ...]) -> None:
        self._ids = ids
        self._tokens: dict[str, str | None] = {}
        self._issued: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self._tokens = {i: f"paper-{i}" for i in self._ids}
        self._issued = dict.fromkeys(self._ids, 0)

    def _known(self, account: str) -> str:
        if account not in self._tokens:
            raise VenueError(404, "GeneralException", f"No account {account!r} at this venue.")
        return account

    def expire(self, account: str) -> None:
        self._tokens[self._known(account)] = None

    def issue(self, account: str) -> str:
        self._issued[self._known(account)] += 1
        token = f"paper-{account}-{self._issued[account]}"
        self._tokens[account] = token
        return token

    def owner(self, api_key: str | None, access_token: str | None) -> str | None:
        if api_key != API_KEY or not access_token:
            return None
        for account, token in self._tokens.items():
            if token == access_token:
                return account
        return None

    def authenticate(self, authorization: str | None, version: str | None) -> str:
        """The account behind `Authorization: token api_key:access_token`, or TokenException."""
        if version != KITE_VERSION:
            raise token_error("Missing or wrong `X-Kite-Version` header: use 3.")
        scheme, _, credentials = (authorization or "").partition(" ")
        api_key, _, access_token = credentials.strip().partition(":")
        account = self.owner(api_key, access_token) if scheme.lower() == "token" else None
        if account is None:
            raise token_error()
        return account
