"""The official `KiteTicker` (Twisted, which runs once per process) as a subprocess of a test.

    python tests/kite_ticker_client.py ROOT API_KEY ACCESS_TOKEN '{"ltp": [t1], "full": [t2]}'

On connect it subscribes every token and sets each group's mode; it prints one JSON line per
event: `{"event": "connect"}`, `{"event": "ticks", "ticks": [...]}` (datetimes as ISO text),
`{"event": "order", "data": {...}}`, `{"event": "error", ...}`, `{"event": "close", ...}`.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from kiteconnect import KiteTicker


def emit(event: str, **fields: Any) -> None:
    def default(value: object) -> str:
        if isinstance(value, dt.datetime):
            return value.isoformat()
        raise TypeError(f"not JSON: {value!r}")

    print(json.dumps({"event": event, **fields}, default=default), flush=True)


def main() -> None:
    root, api_key, access_token, modes_json = sys.argv[1:5]
    modes: dict[str, list[int]] = json.loads(modes_json)
    ticker = KiteTicker(api_key, access_token, root=root, reconnect=False)

    def on_connect(ws: KiteTicker, response: object) -> None:
        for mode, tokens in modes.items():
            ws.subscribe(tokens)
            ws.set_mode(mode, tokens)
        emit("connect")

    ticker.on_connect = on_connect
    ticker.on_ticks = lambda ws, ticks: emit("ticks", ticks=ticks)
    ticker.on_order_update = lambda ws, data: emit("order", data=data)
    ticker.on_error = lambda ws, code, reason: emit("error", code=code, reason=str(reason))
    ticker.on_close = lambda ws, code, reason: emit("close", code=code, reason=str(reason))
    ticker.connect()


if __name__ == "__main__":
    main()
