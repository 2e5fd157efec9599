"""The compatibility suite's WSGI app (Flask), served by gunicorn (HTTP/1.1).

Every response carries `x-app-proto: <SERVER_PROTOCOL gunicorn saw>`; requests with a
`tag` query parameter are remembered (`GET /_seen?tag=T`), as in asgi_app.py. Run with one
worker process (threads for concurrency) so that the memory is shared.
"""

import hashlib
import random
import threading

from flask import Flask, Response, jsonify, request

app = Flask(__name__)

_BLOCK = random.Random(20261201).randbytes(65521)
_SEEN: dict[str, list[str]] = {}
_SEEN_LOCK = threading.Lock()


def content(size: int) -> bytes:
    reps = size // len(_BLOCK) + 1
    return (_BLOCK * reps)[:size]


@app.before_request
def remember():
    tag = request.args.get("tag")
    if tag and request.path != "/_seen":
        version = request.environ.get("SERVER_PROTOCOL", "?")
        with _SEEN_LOCK:
            seen = _SEEN.setdefault(tag, [])
            if version not in seen:
                seen.append(version)


@app.after_request
def add_proto(resp):
    resp.headers["x-app-proto"] = request.environ.get("SERVER_PROTOCOL", "?").removeprefix("HTTP/")
    return resp


@app.route("/echo", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def echo():
    body = request.get_data()
    return jsonify(
        {
            "method": request.method,
            "path": request.path,
            "raw_path": request.environ.get("RAW_URI", ""),
            "query": request.query_string.decode("latin-1"),
            "headers": [[k.lower(), v] for k, v in request.headers.items()],
            "http_version": request.environ.get("SERVER_PROTOCOL", "?").removeprefix("HTTP/"),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_length": len(body),
        }
    )


@app.route("/cookies")
def cookies():
    return jsonify(dict(request.cookies))


@app.route("/upload", methods=["POST", "PUT"])
def upload():
    h = hashlib.sha256()
    n = 0
    stream = request.stream
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return jsonify({"sha256": h.hexdigest(), "length": n})


@app.route("/slow-upload", methods=["POST", "PUT"])
def slow_upload():
    n = 0
    stream = request.stream
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        n += len(chunk)
    return jsonify({"length": n})


@app.route("/refuse", methods=["GET", "POST", "PUT"])
def refuse():
    # Answers without reading the body.
    return Response("not here\n", status=404, mimetype="text/plain")


@app.route("/bytes")
def fixed_bytes():
    size = int(request.args.get("size", "4096"))
    return Response(content(size), mimetype="application/octet-stream")


@app.route("/_seen")
def seen():
    with _SEEN_LOCK:
        return jsonify(list(_SEEN.get(request.args.get("tag", ""), [])))
