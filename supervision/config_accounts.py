"""The `[[accounts]]` tables: each account's broker, credentials, client tokens and webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.settings import AccountSettings, ClientToken, WebhookSettings

from .config_fields import ConfigError, from_env, optional_str


def parse_account(index: int, doc: Any, env: Mapping[str, str]) -> AccountSettings:
    where = f"accounts[{index}]"
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise ConfigError(f"{where}.id: required, a non-empty string")
    account_id = doc["id"]
    broker = doc.get("broker", "paper")
    if broker not in ("paper", "kite"):
        raise ConfigError(f"{where}.broker: must be 'paper' or 'kite', not {broker!r}")
    tokens = tuple(_token(account_id, i, t) for i, t in enumerate(doc.get("tokens", [])))
    webhooks = tuple(_webhook(f"{where}.webhooks[{i}]", h, env)
                     for i, h in enumerate(doc.get("webhooks", [])))
    if broker == "kite":
        api_key = from_env(env, doc, "api_key_env", f"{where}.api_key_env")
        if not api_key:
            raise ConfigError(f"{where}.api_key_env: the variable {doc['api_key_env']} is not set")
        # A missing access token is not fatal: the actor waits in auth_expired for one.
        access_token = from_env(env, doc, "access_token_env", f"{where}.access_token_env")
        return AccountSettings(
            id=account_id,
            broker=broker,
            tokens=tokens,
            api_key=api_key,
            access_token=access_token,
            api_secret=_api_secret(env, doc, where),
            user_id=optional_str(doc, "user_id", where),
            rest_url=str(doc.get("rest_url", "https://api.kite.trade")),
            ticker_url=str(doc.get("ticker_url", "wss://ws.kite.trade")),
            login_url=optional_str(doc, "login_url", where),
            webhooks=webhooks,
        )
    return AccountSettings(
        id=account_id,
        broker=broker,
        tokens=tokens,
        api_key="paper",
        access_token=f"paper-{account_id}",
        user_id=account_id,
        rest_url=doc.get("rest_url"),
        ticker_url=doc.get("ticker_url"),
        login_url=optional_str(doc, "login_url", where),
        webhooks=webhooks,
    )


def _api_secret(env: Mapping[str, str], doc: Mapping[str, Any], where: str) -> str:
    """The Kite app's secret, from the variable `api_secret_env` names ("" without one)."""
    if "api_secret_env" not in doc:
        return ""
    secret = from_env(env, doc, "api_secret_env", f"{where}.api_secret_env")
    if not secret:
        raise ConfigError(
            f"{where}.api_secret_env: the variable {doc['api_secret_env']} is not set"
        )
    return secret


def _token(account_id: str, index: int, doc: Any) -> ClientToken:
    if isinstance(doc, str):
        return ClientToken(f"{account_id}#{index}", doc)
    if isinstance(doc, dict) and isinstance(doc.get("token"), str):
        return ClientToken(str(doc.get("name", f"{account_id}#{index}")), doc["token"])
    raise ConfigError(f"accounts[{account_id}].tokens[{index}]: a string or {{name, token}}")


def _webhook(where: str, doc: Any, env: Mapping[str, str]) -> WebhookSettings:
    if not isinstance(doc, dict) or not isinstance(doc.get("url"), str):
        raise ConfigError(f"{where}.url: required, an http(s) URL")
    if not doc["url"].startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: must start with http:// or https://")
    secret_env = doc.get("secret_env")
    if not isinstance(secret_env, str) or not env.get(secret_env):
        raise ConfigError(f"{where}.secret_env: required, a set environment variable "
                          "(webhooks are always signed)")
    return WebhookSettings(url=doc["url"], secret=env[secret_env])


def check_tokens(
    admin_token: str, accounts: tuple[AccountSettings, ...], metrics_token: str = ""
) -> None:
    """A token names exactly one caller: no token shared between accounts, the admin and
    Prometheus (so the metrics token can never be the admin's)."""
    seen: dict[str, str] = {admin_token: "server.admin_token"}
    if metrics_token == admin_token:
        raise ConfigError("server.metrics_token: must not be the admin token")
    if metrics_token:
        seen[metrics_token] = "server.metrics_token"
    for account in accounts:
        for token in account.tokens:
            if not token.value:
                raise ConfigError(f"accounts[{account.id}].tokens: a token is empty")
            if token.value in seen:
                raise ConfigError(
                    f"accounts[{account.id}].tokens: token {token.name!r} is also "
                    f"{seen[token.value]}; every token must be unique"
                )
            seen[token.value] = f"accounts[{account.id}] {token.name!r}"
