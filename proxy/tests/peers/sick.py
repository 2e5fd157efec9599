#!/usr/bin/env python3
"""An upstream built to misbehave, for weft's resilience tests (standard library only).

sick.py NAME      listens on 127.0.0.1 (a free port), prints "port N", then serves
HTTP/1.1 with keep-alive:
  GET /healthz          200 while its health is "pass", else 503
  any other request     by its mode: ok (200, JSON {"server": NAME, "path": ...}),
                        fail (503), slow:MS (200 after MS milliseconds),
                        reset (the connection is reset, nothing answered)
Control, sent to it directly (not through the proxy):
  GET /_sick/mode/MODE, GET /_sick/health/pass|fail   set them; answer 200
  GET /_sick/count                                    requests served (not /healthz, not control)
  GET /_sick/checks                                   /healthz requests seen
It stops when its parent closes its stdin, or when killed.
"""
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1] if len(sys.argv) > 1 else "sick"
state = {"mode": "ok", "health": "pass", "count": 0, "checks": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path
        if path.startswith("/_sick/"):
            parts = path.split("/")[2:]
            with lock:
                if parts[0] == "mode":
                    state["mode"] = parts[1]
                elif parts[0] == "health":
                    state["health"] = parts[1]
                snapshot = dict(state)
            return self.answer(200, snapshot)
        if path == "/healthz":
            with lock:
                state["checks"] += 1
                ok = state["health"] == "pass"
            return self.answer(200 if ok else 503, {"server": NAME, "health": ok})
        with lock:
            state["count"] += 1
            mode = state["mode"]
        if mode == "fail":
            return self.answer(503, {"server": NAME, "error": "failing on purpose"})
        if mode == "reset":
            # SO_LINGER 0: the close sends RST.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.close_connection = True
            self.connection.close()
            return
        if mode.startswith("slow:"):
            time.sleep(int(mode[5:]) / 1000)
        self.answer(200, {"server": NAME, "path": path})

    do_GET = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_DELETE = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The parent closing stdin (or dying) ends the server.
    sys.stdin.read()


if __name__ == "__main__":
    main()
