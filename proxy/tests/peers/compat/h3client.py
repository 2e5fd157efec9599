"""The compatibility suite's HTTP/3 client: one request over a fresh QUIC connection, on
aioquic (PyPI, in the venv scripts/install-test-peers.sh makes).

    from h3client import request
    r = request("127.0.0.1", 8443, "POST", "/echo?x=1", [("x-a", "1"), ("x-a", "2")], body,
                cafile="cert.pem")
    r.status, r.headers, r.body, r.chunks

- The UDP socket binds 127.0.0.1 only (aioquic's own `connect` binds `::`).
- The server's certificate is verified against `cafile` (the suite's self-signed
  certificate) and `server_name` (default: the host, an IP address checked against the
  certificate's IP SANs); `verify=False` turns verification off explicitly.
- Request headers go as given (names lower-cased; repeated fields kept as separate
  fields, e.g. several `cookie` fields); with a body, a `content-length` is added unless
  given. The body is sent in `chunk_size` pieces, each only once less than `window` bytes
  are still unacknowledged, so a large body is streamed, not queued whole.
- aioquic's check that a response's DATA matches its content-length is skipped where
  there is no content (HEAD, 204, 304); elsewhere a mismatch fails the request.
- The response: `status`, `headers` (a list of (name, value), repeated fields kept, no
  pseudo-headers), `body` (bytes), `chunks` ((seconds since the request went, bytes) per
  DATA event, for streamed responses such as SSE), `informational` (1xx heads) and
  `trailers`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamReset

# Connection-specific fields HTTP/3 forbids (RFC 9114 4.2).
CONNECTION_FIELDS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}


class H3Error(Exception):
    pass


@dataclass
class H3Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    informational: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    http_version: str = "HTTP/3"


def _decode(headers) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


class _Stream:
    def __init__(self, loop, t0: float):
        self.t0 = t0
        self.heads: list[list[tuple[str, str]]] = []
        self.chunks: list[tuple[float, bytes]] = []
        self.trailers: list[tuple[str, str]] = []
        self.done = loop.create_future()


class _H3(H3Connection):
    """aioquic checks a response's content-length against its DATA even where there is no
    content: a response to HEAD, a 204 or a 304 (RFC 9110 8.6, 6.4.1). It does not know the
    request's method: skip the check on those streams."""

    def __init__(self, quic):
        super().__init__(quic)
        self.bodiless: set[int] = set()

    def _decode_headers(self, stream_id, frame_data):
        headers = super()._decode_headers(stream_id, frame_data)
        if any(k == b":status" and v in (b"204", b"304") for k, v in headers):
            self.bodiless.add(stream_id)
        return headers

    def _check_content_length(self, stream):
        if stream.stream_id not in self.bodiless:
            super()._check_content_length(stream)


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.h3 = _H3(self._quic)
        self.streams: dict[int, _Stream] = {}
        self.terminated: str | None = None

    def quic_event_received(self, event):
        if isinstance(event, StreamReset) and event.stream_id in self.streams:
            self._fail(event.stream_id, H3Error(f"stream reset by the server, error code 0x{event.error_code:x}"))
        if isinstance(event, ConnectionTerminated):
            self.terminated = f"error code 0x{event.error_code:x}: {event.reason_phrase}"
            for sid in list(self.streams):
                self._fail(sid, H3Error(f"connection closed, error code 0x{event.error_code:x}: {event.reason_phrase}"))
        for ev in self.h3.handle_event(event):
            s = self.streams.get(getattr(ev, "stream_id", None))
            if s is None:
                continue
            if isinstance(ev, HeadersReceived):
                hs = _decode(ev.headers)
                if s.heads and _status(s.heads[-1]) >= 200:
                    s.trailers = hs  # a head after the final one: trailers
                else:
                    s.heads.append(hs)
            elif isinstance(ev, DataReceived) and ev.data:
                s.chunks.append((time.monotonic() - s.t0, ev.data))
            if getattr(ev, "stream_ended", False) and not s.done.done():
                s.done.set_result(None)

    def _fail(self, sid: int, exc: Exception):
        s = self.streams.get(sid)
        if s is not None and not s.done.done():
            s.done.set_exception(exc)

    def unacked(self, sid: int) -> int:
        """Bytes of the stream sent or queued but not yet acknowledged (aioquic internals)."""
        st = self._quic._streams.get(sid)
        if st is None:
            return 0
        return st.sender._buffer_stop - st.sender._buffer_start


def _status(head: list[tuple[str, str]]) -> int:
    for k, v in head:
        if k == ":status":
            return int(v)
    return 0


async def arequest(host: str, port: int, method: str, path: str, headers=(), body: bytes | None = None, *,
                   authority: str | None = None, cafile: str | None = None, server_name: str | None = None,
                   verify: bool = True, timeout: float = 30, chunk_size: int = 65536,
                   window: int = 1 << 20) -> H3Response:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    cfg.server_name = server_name or host
    if verify:
        if cafile:
            cfg.load_verify_locations(cafile)
    else:
        import ssl

        cfg.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
    except BaseException:
        sock.close()
        raise
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _Protocol(QuicConnection(configuration=cfg)), sock=sock)
    try:
        proto.connect((host, port))
        try:
            await asyncio.wait_for(proto.wait_connected(), timeout)
        except ConnectionError:
            raise H3Error(f"QUIC handshake failed: {proto.terminated}") from None

        sid = proto._quic.get_next_available_stream_id()
        t0 = time.monotonic()
        stream = _Stream(loop, t0)
        proto.streams[sid] = stream
        fields = [(b":method", method.encode()), (b":scheme", b"https"),
                  (b":authority", (authority or f"{host}:{port}").encode()), (b":path", path.encode())]
        names = set()
        for k, v in headers:
            k = k.lower()
            names.add(k)
            fields.append((k.encode("latin-1"), v.encode("latin-1")))
        if body is not None and "content-length" not in names and (body or method not in ("GET", "HEAD")):
            fields.append((b"content-length", str(len(body)).encode()))
        if method == "HEAD":
            proto.h3.bodiless.add(sid)
        proto.h3.send_headers(sid, fields, end_stream=not body)
        proto.transmit()

        async def send_body():
            for i in range(0, len(body), chunk_size):
                while proto.unacked(sid) > window and not stream.done.done():
                    await asyncio.sleep(0.001)
                if stream.done.done():
                    return  # answered (and maybe refused) before the body went: stop sending
                proto.h3.send_data(sid, body[i:i + chunk_size], end_stream=i + chunk_size >= len(body))
                proto.transmit()

        sender = asyncio.ensure_future(send_body()) if body else None
        try:
            await asyncio.wait_for(asyncio.shield(stream.done), timeout)
        except asyncio.TimeoutError:
            raise H3Error(f"no complete response in {timeout}s: {len(stream.heads)} heads, "
                          f"{sum(len(c) for _, c in stream.chunks)} body bytes") from None
        finally:
            if sender is not None:
                sender.cancel()
        final = next((h for h in stream.heads if _status(h) >= 200), None)
        if final is None:
            raise H3Error("the stream ended without a final response head")
        return H3Response(
            status=_status(final),
            headers=[(k, v) for k, v in final if not k.startswith(":")],
            body=b"".join(c for _, c in stream.chunks),
            chunks=stream.chunks,
            informational=[(_status(h), [(k, v) for k, v in h if not k.startswith(":")])
                           for h in stream.heads if _status(h) < 200],
            trailers=stream.trailers,
        )
    finally:
        proto.close()
        try:
            await asyncio.wait_for(proto.wait_closed(), 2)
        except asyncio.TimeoutError:
            pass
        transport.close()


def request(host: str, port: int, method: str, path: str, headers=(), body: bytes | None = None, **kw) -> H3Response:
    """arequest() on an event loop of its own (one per call: safe from any thread)."""
    return asyncio.run(arequest(host, port, method, path, headers, body, **kw))
