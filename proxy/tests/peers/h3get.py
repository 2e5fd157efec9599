#!/usr/bin/env python3
"""An HTTP/3 client for weft's tests, on aioquic (PyPI).

h3get.py URL [--connect 127.0.0.1] [--ca ca.pem] [--cert c.pem --key k.pem]
             [--method POST --body-size N]
Prints one JSON object: status, headers (lower-case names, last value), body_len, and
body (as text, when under 64 KiB). Exits 2 when the connection or handshake fails.
"""
import argparse
import asyncio
import json
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class H3Client(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.h3 = H3Connection(self._quic)
        self.pending = {}

    def quic_event_received(self, event):
        for ev in self.h3.handle_event(event):
            if isinstance(ev, (HeadersReceived, DataReceived)) and ev.stream_id in self.pending:
                fut, evs = self.pending[ev.stream_id]
                evs.append(ev)
                if ev.stream_ended:
                    del self.pending[ev.stream_id]
                    fut.set_result(evs)

    async def request(self, method, url, body=b""):
        u = urlparse(url)
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        sid = self._quic.get_next_available_stream_id()
        headers = [(b":method", method.encode()), (b":scheme", b"https"),
                   (b":authority", u.netloc.encode()), (b":path", path.encode())]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        self.h3.send_headers(sid, headers, end_stream=not body)
        fut = self._loop.create_future()
        self.pending[sid] = (fut, [])
        if body:
            # In pieces, so the body arrives as several DATA frames.
            step = 16384
            for i in range(0, len(body), step):
                self.h3.send_data(sid, body[i:i + step], end_stream=i + step >= len(body))
                self.transmit()
        self.transmit()
        evs = await asyncio.wait_for(fut, 20)
        heads = [e for e in evs if isinstance(e, HeadersReceived)]
        data = b"".join(e.data for e in evs if isinstance(e, DataReceived))
        return heads[0].headers, data


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--connect")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--method", default="GET")
    p.add_argument("--body-size", type=int, default=0)
    a = p.parse_args()
    u = urlparse(a.url)
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    cfg.server_name = u.hostname
    if a.ca:
        cfg.load_verify_locations(a.ca)
    if a.cert:
        cfg.load_cert_chain(a.cert, a.key)
    try:
        async with connect(a.connect or u.hostname, u.port or 443, configuration=cfg,
                           create_protocol=H3Client, wait_connected=True) as c:
            headers, body = await c.request(a.method, a.url, b"x" * a.body_size)
    except Exception as e:  # noqa: BLE001 - the test reads the message
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(2)
    hs = {k.decode(): v.decode() for k, v in headers}
    out = {"status": int(hs.get(":status", "0")), "headers": hs, "body_len": len(body)}
    if len(body) < 65536:
        out["body"] = body.decode(errors="replace")
    print(json.dumps(out))


asyncio.run(main())
