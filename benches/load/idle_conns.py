#!/usr/bin/env python3
"""Opens many idle connections to one address and holds them.

Usage: idle_conns.py HOST PORT COUNT MODE [SOURCES]
  MODE: silent  (connect and send nothing),
        request (one HTTP/1.1 GET answered, then the kept-alive connection idles),
        h2      (HTTP/2 prior knowledge: preface and SETTINGS, the server's SETTINGS
                 acknowledged, no stream).
  SOURCES: how many loopback source addresses to spread over (127.0.0.2 and up;
           default enough for 25,000 connections each, past the ephemeral-port range).
Prints "open N failed F" once all are open, then holds them until stdin closes or
HOLD_SECONDS (default 300) pass, and exits (closing them all).
"""

import os
import resource
import struct
import select
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # empty SETTINGS
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk


def read_h2_settings(s):
    # The server's first frame is SETTINGS; read frames until one is seen.
    buf = b""
    while True:
        while len(buf) < 9:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before SETTINGS")
            buf += chunk
        length = int.from_bytes(buf[:3], "big")
        kind, flags = buf[3], buf[4]
        while len(buf) < 9 + length:
            buf += s.recv(65536)
        buf = buf[9 + length:]
        if kind == 4 and not flags & 1:
            return


def main():
    host, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sources = int(sys.argv[5]) if len(sys.argv) > 5 else max(1, -(-count // 25000))
    hold = float(os.environ.get("HOLD_SECONDS", "300"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, failed = [], 0
    deadline = time.monotonic() + 600
    for i in range(count):
        if time.monotonic() > deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # The port is chosen at connect, unique per address pair (not per source
            # address), and closing resets instead of leaving TIME_WAIT behind: runs
            # one after another do not exhaust the ephemeral ports.
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.bind((f"127.0.0.{2 + i % sources}", 0))
            s.settimeout(10)
            s.connect((host, port))
            if mode == "request":
                s.sendall(f"GET /idle HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                read_response(s)
            elif mode == "h2":
                s.sendall(H2_PREFACE + H2_SETTINGS)
                read_h2_settings(s)
                s.sendall(H2_SETTINGS_ACK)
            socks.append(s)
        except OSError as e:
            failed += 1
            if failed <= 3:
                print(f"connection {i}: {e}", file=sys.stderr)
            s.close()
    print(f"open {len(socks)} failed {failed}", flush=True)
    # Hold until told (stdin closed) or the time is up; answer nothing meanwhile.
    end = time.monotonic() + hold
    while time.monotonic() < end:
        r, _, _ = select.select([sys.stdin], [], [], 1.0)
        if r and not sys.stdin.readline():
            break
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
