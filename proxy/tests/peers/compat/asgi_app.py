"""The compatibility suite's ASGI app (Starlette), served by uvicorn (HTTP/1.1) and by
hypercorn (HTTP/1.1 and h2c prior knowledge on the same port).

Every HTTP response carries `x-app-proto: <the HTTP version the server saw>`, so the
driver can tell which protocol went on the proxy->app hop; requests with a `tag` query
parameter are also remembered by tag (`GET /_seen?tag=T` lists the versions seen), for
load clients whose responses the driver cannot read.

Environment: COMPAT_FILE, the file `/file` serves (ranges, conditional GET).
"""

import asyncio
import hashlib
import json
import os
import random

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

# Deterministic content: a prime-sized random block, repeated.
_BLOCK = random.Random(20261201).randbytes(65521)


def content(size: int, offset: int = 0) -> bytes:
    out = bytearray()
    pos = offset
    while len(out) < size:
        start = pos % len(_BLOCK)
        take = min(len(_BLOCK) - start, size - len(out))
        out += _BLOCK[start : start + take]
        pos += take
    return bytes(out)


_SEEN: dict[str, list[str]] = {}


def _headers(request: Request) -> list[list[str]]:
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]]


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": _headers(request),
            "http_version": request.scope["http_version"],
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_length": len(body),
        }
    )


async def download(request: Request) -> Response:
    size = int(request.query_params.get("size", "1048576"))
    chunk = int(request.query_params.get("chunk", "16384"))

    async def gen():
        sent = 0
        while sent < size:
            n = min(chunk, size - sent)
            yield content(n, sent)
            sent += n

    return StreamingResponse(gen(), media_type="application/octet-stream")


async def fixed_bytes(request: Request) -> Response:
    size = int(request.query_params.get("size", "4096"))
    return Response(content(size), media_type="application/octet-stream")


async def upload(request: Request) -> Response:
    h = hashlib.sha256()
    n = 0
    async for chunk in request.stream():
        h.update(chunk)
        n += len(chunk)
    return JSONResponse({"sha256": h.hexdigest(), "length": n})


async def slow_upload(request: Request) -> Response:
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return JSONResponse({"length": n})


async def refuse(request: Request) -> Response:
    # Answers without reading the body (an Expect: 100-continue client sends none).
    return PlainTextResponse("not here\n", status_code=404)


async def sse(request: Request) -> Response:
    count = int(request.query_params.get("n", "5"))
    gap = float(request.query_params.get("gap", "0.2"))

    async def gen():
        for i in range(count):
            if i:
                await asyncio.sleep(gap)
            yield f"id: {i}\nevent: tick\ndata: event {i}\n\n".encode()

    return StreamingResponse(
        gen(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


async def file(request: Request) -> Response:
    return FileResponse(
        os.environ["COMPAT_FILE"],
        media_type="application/octet-stream",
        headers={"cache-control": "public, max-age=60"},
    )


ETAG = '"v1-' + hashlib.sha256(content(4096)).hexdigest()[:16] + '"'


async def etag(request: Request) -> Response:
    headers = {"etag": ETAG, "cache-control": "max-age=0, must-revalidate", "vary": "accept-encoding"}
    inm = request.headers.get("if-none-match")
    if inm is not None and ETAG in [t.strip() for t in inm.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(content(4096), media_type="application/octet-stream", headers=headers)


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    if code in (204, 304) or code < 200:
        return Response(status_code=code)
    return PlainTextResponse(f"status {code}\n", status_code=code)


async def set_cookies(request: Request) -> Response:
    r = PlainTextResponse("cookies set\n")
    r.set_cookie("a", "1", path="/")
    r.set_cookie("b", "2", httponly=True, samesite="strict")
    r.raw_headers.append((b"set-cookie", b"c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/"))
    return r


async def redirect(request: Request) -> Response:
    return RedirectResponse("/echo", status_code=302)


async def cookies(request: Request) -> Response:
    return JSONResponse(request.cookies)


async def big_header(request: Request) -> Response:
    v = request.headers.get("x-big", "")
    return JSONResponse({"x-big-length": len(v), "x-big-sha256": hashlib.sha256(v.encode()).hexdigest()})


async def seen(request: Request) -> Response:
    return JSONResponse(_SEEN.get(request.query_params.get("tag", ""), []))


async def _gzip_text(scope, receive, send):
    text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(4000))
    await PlainTextResponse(text)(scope, receive, send)


async def ws(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols") or []
    chosen = next((p for p in ("chat.v2", "chat.v1") if p in offered), None)
    await websocket.accept(subprotocol=chosen)
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                t = msg["text"]
                if t.startswith("close:"):
                    await websocket.close(code=int(t[6:]), reason="bye")
                    return
                await websocket.send_text(t)
            elif msg.get("bytes") is not None:
                await websocket.send_bytes(msg["bytes"])
    except WebSocketDisconnect:
        return


routes = [
    Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    Route("/download", download),
    Route("/bytes", fixed_bytes),
    Route("/upload", upload, methods=["POST", "PUT"]),
    Route("/slow-upload", slow_upload, methods=["POST", "PUT"]),
    Route("/refuse", refuse, methods=["GET", "POST", "PUT"]),
    Route("/sse", sse),
    Route("/file", file),
    Route("/etag", etag),
    Route("/status/{code:int}", status, methods=["GET", "POST"]),
    Route("/set-cookies", set_cookies),
    Route("/redirect", redirect),
    Route("/cookies", cookies),
    Route("/big-header", big_header),
    Route("/gzip", GZipMiddleware(_gzip_text, minimum_size=500)),
    Route("/_seen", seen),
    WebSocketRoute("/ws", ws),
]

_starlette = Starlette(routes=routes)


async def app(scope, receive, send):
    """Adds x-app-proto and remembers tagged requests' HTTP versions."""
    if scope["type"] != "http":
        return await _starlette(scope, receive, send)
    version = scope.get("http_version", "?")
    qs = scope.get("query_string", b"").decode("latin-1")
    for part in qs.split("&") if scope.get("path") != "/_seen" else ():
        if part.startswith("tag="):
            seen_list = _SEEN.setdefault(part[4:], [])
            if version not in seen_list:
                seen_list.append(version)

    async def send_with_proto(message):
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = list(message.get("headers", [])) + [
                (b"x-app-proto", version.encode())
            ]
        await send(message)

    await _starlette(scope, receive, send_with_proto)


if __name__ == "__main__":
    print(json.dumps([r.path for r in routes]))
