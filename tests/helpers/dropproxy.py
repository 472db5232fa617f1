#!/usr/bin/env python3
"""A TCP proxy that drops connections mid-response, for testing resumed downloads.

    dropproxy.py TARGET_PORT [--drops N] [--after K] [--port P]

Listens on 127.0.0.1:P (P=0, the default, lets the kernel choose) and writes the port it
listens on as one line to stdout. Every connection is forwarded to 127.0.0.1:TARGET_PORT.
The first N connections (default 1) are cut once K bytes (default 65536) of the target's
response have been passed on: both sides are closed, so an HTTP client sees its body end
early and has to come back with a Range request. Later connections pass through untouched.
What it does goes to stderr, one line per event. Standard library only; runs until killed.
"""

import argparse
import socket
import sys
import threading

lock = threading.Lock()
accepted = 0


def log(msg):
    print(f"dropproxy: {msg}", file=sys.stderr, flush=True)


def close(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def pump_requests(client, upstream):
    """Client to target, until either side closes."""
    try:
        while data := client.recv(65536):
            upstream.sendall(data)
        upstream.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(client, n, args):
    try:
        upstream = socket.create_connection(("127.0.0.1", args.target_port))
    except OSError as e:
        log(f"connection {n}: target 127.0.0.1:{args.target_port} refused ({e})")
        close(client)
        return
    threading.Thread(target=pump_requests, args=(client, upstream), daemon=True).start()
    cut = n <= args.drops
    sent = 0
    try:
        while True:
            want = 65536 if not cut else min(65536, args.after - sent)
            if cut and want <= 0:
                log(f"connection {n}: cut after {sent} response bytes")
                break
            data = upstream.recv(want)
            if not data:
                log(f"connection {n}: passed {sent} response bytes, target closed")
                break
            client.sendall(data)
            sent += len(data)
    except OSError as e:
        log(f"connection {n}: {e} after {sent} response bytes")
    close(client, upstream)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target_port", type=int)
    p.add_argument("--drops", type=int, default=1, help="connections to cut (the first N)")
    p.add_argument("--after", type=int, default=65536, help="response bytes before the cut")
    p.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    args = p.parse_args()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(16)
    port = server.getsockname()[1]
    log(f"listening on 127.0.0.1:{port}, forwarding to 127.0.0.1:{args.target_port}, "
        f"cutting the first {args.drops} connection(s) after {args.after} response bytes")
    print(port, flush=True)
    global accepted
    while True:
        client, peer = server.accept()
        with lock:
            accepted += 1
            n = accepted
        log(f"connection {n} from {peer[0]}:{peer[1]}")
        threading.Thread(target=serve, args=(client, n, args), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
