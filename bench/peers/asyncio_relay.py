"""The peer we measure against: a minimal relay written the way the replaced system was.

asyncio, the `websockets` library, one upstream ticker socket per account, and
`websockets.broadcast()` of every order frame to that account's clients. No store, no seq, no
book: the lower bound of "receive and forward". Clients connect to ws://HOST:PORT/<account>.

    python bench/peers/asyncio_relay.py --bind 127.0.0.1:9100 \
        --ticker ws://127.0.0.1:8765/ --accounts primary
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import broadcast, serve


async def follow(account: str, ticker_url: str, clients: set) -> None:
    query = urlencode({"api_key": "paper", "access_token": f"paper-{account}"})
    while True:
        try:
            async with connect(f"{ticker_url.rstrip('/')}/?{query}") as upstream:
                async for message in upstream:
                    if isinstance(message, bytes):
                        continue
                    frame = json.loads(message)
                    if frame.get("type") == "order":
                        out = json.dumps({"type": "order", "account": account,
                                          "order": frame["data"]})
                        broadcast(clients, out)
        except (OSError, websockets.ConnectionClosed):
            await asyncio.sleep(0.2)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:9100")
    parser.add_argument("--ticker", required=True)
    parser.add_argument("--accounts", default="primary")
    args = parser.parse_args()
    accounts = args.accounts.split(",")
    clients: dict[str, set] = {a: set() for a in accounts}

    async def handler(ws) -> None:
        account = ws.request.path.strip("/")
        group = clients.get(account)
        if group is None:
            await ws.close(4404, "unknown account")
            return
        group.add(ws)
        try:
            await ws.wait_closed()
        finally:
            group.discard(ws)

    host, port = args.bind.rsplit(":", 1)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, int(port), max_queue=None) as server:
        bound = server.sockets[0].getsockname()
        print(json.dumps({"relay": f"ws://{bound[0]}:{bound[1]}/"}), flush=True)
        tasks = [asyncio.create_task(follow(a, args.ticker, clients[a])) for a in accounts]
        await stop
        for task in tasks:
            task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
