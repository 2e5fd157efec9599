#!/usr/bin/env python3
"""A real gRPC server and client for weft's tests, on Python's grpcio (PyPI). Messages
are raw bytes (no protobuf): the generic handlers pass them through.

grpc_peer.py serve NAME [--tls cert.pem key.pem]
    listens on 127.0.0.1 (a free port), prints "port N", serves /test.Echo/*:
      Unary          answers b"NAME:" + request; initial metadata x-server: NAME,
                     trailing metadata x-trailer: done
      ClientStream   answers the requests joined with b"+"
      ServerStream   request b"N": answers N messages b"0" .. b"N-1"
      Bidi           answers each request as it comes, b"echo:" + request
      Fail           ends with NOT_FOUND, details "no such thing", trailing x-why: testing
      Flaky          the first call for each request payload ends UNAVAILABLE at once
                     (trailers-only), later ones succeed
      Slow           waits 2 s, then answers
    stops when stdin closes.
grpc_peer.py call TARGET SCENARIO [--ca ca.pem --authority NAME] [--timeout S]
                 [--service NAME]
    runs a scenario (unary, client_stream, server_stream, bidi, fail, flaky, slow) and
    prints one JSON object: code, details, responses (as text), initial and trailing
    metadata.
"""
import argparse
import json
import sys
import threading
import time
from concurrent import futures

import grpc


def serve(args):
    name = args.name.encode()
    flaky_seen = set()
    lock = threading.Lock()

    def unary(request, context):
        context.send_initial_metadata((("x-server", args.name),))
        context.set_trailing_metadata((("x-trailer", "done"),))
        return name + b":" + request

    def client_stream(requests, context):
        return b"+".join(requests)

    def server_stream(request, context):
        for i in range(int(request)):
            yield str(i).encode()

    def bidi(requests, context):
        for r in requests:
            yield b"echo:" + r

    def fail(request, context):
        context.set_trailing_metadata((("x-why", "testing"),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def flaky(request, context):
        with lock:
            first = request not in flaky_seen
            flaky_seen.add(request)
        if first:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return name + b":" + request

    def slow(request, context):
        time.sleep(2)
        return request

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Flaky": grpc.unary_unary_rpc_method_handler(flaky),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    if args.tls:
        cert, key = (open(p, "rb").read() for p in args.tls)
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    sys.stdin.read()
    server.stop(0)


def call(args):
    if args.ca:
        creds = grpc.ssl_channel_credentials(open(args.ca, "rb").read())
        options = (("grpc.ssl_target_name_override", args.authority),) if args.authority else ()
        channel = grpc.secure_channel(args.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(args.target)
    out = {"code": "OK", "details": "", "responses": [], "initial": {}, "trailing": {}}
    s = args.scenario
    timeout = args.timeout
    try:
        if s in ("unary", "fail", "flaky", "slow"):
            method = {"unary": "Unary", "fail": "Fail", "flaky": "Flaky", "slow": "Slow"}[s]
            fn = channel.unary_unary(f"/{args.service}/{method}")
            resp, c = fn.with_call(b"hello", timeout=timeout)
            out["responses"] = [resp.decode()]
            out["initial"] = dict(c.initial_metadata())
            out["trailing"] = dict(c.trailing_metadata())
        elif s == "client_stream":
            fn = channel.stream_unary(f"/{args.service}/ClientStream")
            resp = fn(iter([b"a", b"b", b"c"]), timeout=timeout)
            out["responses"] = [resp.decode()]
        elif s == "server_stream":
            fn = channel.unary_stream(f"/{args.service}/ServerStream")
            out["responses"] = [r.decode() for r in fn(b"5", timeout=timeout)]
        elif s == "bidi":
            fn = channel.stream_stream(f"/{args.service}/Bidi")
            # Each answer arrives before the next request is sent: nothing is buffered
            # on the way.
            q = []
            cond = threading.Condition()
            sent = []

            def requests():
                for i in range(4):
                    with cond:
                        cond.wait_for(lambda: len(q) >= i, timeout=5)
                    sent.append(i)
                    yield f"m{i}".encode()

            for r in fn(requests(), timeout=timeout):
                with cond:
                    q.append(r.decode())
                    cond.notify_all()
            out["responses"] = q
        else:
            raise SystemExit(f"unknown scenario {s}")
    except grpc.RpcError as e:
        out["code"] = e.code().name
        out["details"] = e.details()
        out["trailing"] = dict(e.trailing_metadata() or ())
        out["initial"] = dict(e.initial_metadata() or ())
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("name")
    s.add_argument("--tls", nargs=2)
    c = sub.add_parser("call")
    c.add_argument("target")
    c.add_argument("scenario")
    c.add_argument("--ca")
    c.add_argument("--authority")
    c.add_argument("--timeout", type=float, default=10)
    c.add_argument("--service", default="test.Echo")
    args = p.parse_args()
    serve(args) if args.cmd == "serve" else call(args)


if __name__ == "__main__":
    main()
