#!/usr/bin/python3
"""tutti WebSocket client written with Python's `websockets` (Debian's python3-websockets 10.4).

Run by ws_clients.test.mjs:  /usr/bin/python3 ws_python_client.py BASE_URL CHANNEL BODIES_JSON
  BASE_URL     http://127.0.0.1:PORT of a running tutti
  CHANNEL      channel to subscribe to (published to over HTTP by this script)
  BODIES_JSON  JSON array of strings: the raw bodies to publish, in order

Prints one JSON object on stdout with what it saw; the Node test checks it. Every step has a
timeout, so a server that does not answer makes this script fail instead of hanging.
"""
import asyncio
import json
import sys
import urllib.request

import websockets

TIMEOUT = 5


def post(url, body):
    req = urllib.request.Request(url, data=body.encode("utf-8"), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as res:
        return json.loads(res.read().decode("utf-8"))


async def recv_until(ws, pred, what):
    """Receives messages until pred(parsed) is true; returns (raw, parsed, skipped)."""
    skipped = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
        if isinstance(raw, bytes):
            raise RuntimeError(f"binary message while waiting for {what}")
        msg = json.loads(raw)
        if pred(msg):
            return raw, msg, skipped
        skipped.append(msg)


async def main(base, channel, bodies):
    out = {"steps": []}
    uri = base.replace("http", "ws", 1) + "/ws"
    loop = asyncio.get_running_loop()

    # 1. default client: offers permessage-deflate
    async with websockets.connect(uri, max_size=2 ** 22, open_timeout=TIMEOUT) as ws:
        out["extensions_header"] = ws.response_headers.get("Sec-WebSocket-Extensions")
        out["extensions"] = [e.name for e in ws.extensions]
        out["welcome"] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        out["steps"].append("welcome")

        await ws.send(json.dumps({"type": "subscribe", "channel": channel, "id": "py-sub"}))
        _, out["subscribed"], _ = await recv_until(ws, lambda m: m.get("ref") == "py-sub", "subscribed")
        out["steps"].append("subscribed")

        out["published"] = []
        out["messages_raw"] = []
        for body in bodies:
            ans = await loop.run_in_executor(None, post, f"{base}/api/channels/{channel}/publish?event=py", body)
            out["published"].append(ans)
            raw, _, _ = await recv_until(ws, lambda m: m.get("type") == "message", "message")
            out["messages_raw"].append(raw)
        out["steps"].append("messages")

        await ws.send(json.dumps({"type": "ping", "client_time": 12345, "id": "py-ping"}))
        _, out["pong"], _ = await recv_until(ws, lambda m: m.get("ref") == "py-ping", "pong")
        out["steps"].append("pong")

        # a fragmented (and, with deflate, compressed) request
        frag = json.dumps({"type": "ping", "client_time": 67890, "id": "py-frag", "pad": "é" * 3000})
        await ws.send([frag[:10], frag[10:2000], frag[2000:]])
        _, out["pong_fragmented"], _ = await recv_until(ws, lambda m: m.get("ref") == "py-frag", "pong to fragments")
        out["steps"].append("pong_fragmented")

        # a protocol-level ping: the server answers with a pong
        waiter = await ws.ping(b"py-ping-frame")
        await asyncio.wait_for(waiter, TIMEOUT)
        out["ws_ping_answered"] = True
        out["steps"].append("ws_ping")
    out["close_code"] = ws.close_code
    out["close_reason"] = ws.close_reason
    out["steps"].append("closed")

    # 2. compression switched off
    async with websockets.connect(uri, compression=None, open_timeout=TIMEOUT) as ws2:
        out["plain_extensions_header"] = ws2.response_headers.get("Sec-WebSocket-Extensions")
        out["plain_welcome"] = json.loads(await asyncio.wait_for(ws2.recv(), TIMEOUT))
        await ws2.close(code=4001, reason="custom")
    out["plain_close_code"] = ws2.close_code
    out["plain_close_reason"] = ws2.close_reason
    out["steps"].append("plain")

    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
