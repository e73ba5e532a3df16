"""A small real HTTP/1.1 SPECweb99 server built on `ukweb.specweb99.Oracle`.

It is the reference peer for the load generator's tests (dynamic requests with exact Ad_id
prediction) and the yardstick the C servers are compared against. Keep-alive, one thread per
connection, no access log. Static files come from the docroot; dynamic URLs, Reset and Fetch
go through the oracle.

    python tests/oracle_server.py --docroot D --port 0 --state-dir S   # prints "listening A:P"

or from Python:

    with OracleServer(docroot, state_dir) as srv:
        requests.get(f"{srv.url}/specweb99?command/Fetch")
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ukweb.specweb99 import Oracle, ResetParams

MAX_BODY = 64 * 1024  # POST bodies are ~60 bytes; anything this large is an attack or a bug


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    oracle: Oracle  # set on the subclass made by OracleServer

    def _serve(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            self.send_error(400 if not length.isdigit() else 413)
            self.close_connection = True
            return
        body = self.rfile.read(int(length))
        headers = {k: v for k, v in self.headers.items()}
        resp = self.oracle.handle(self.command, self.path, headers, body,
                                  remote_addr=self.client_address[0])
        keep = self._keep_alive()
        self.wfile.write(resp.http(keep_alive=keep))
        self.wfile.flush()
        self.close_connection = not keep

    def _keep_alive(self) -> bool:
        conn = self.headers.get("Connection", "").lower()
        if self.request_version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        """No access logging, as in the paper's servers."""


class OracleServer:
    """The oracle on a loopback port, in a background thread; a context manager."""

    def __init__(self, docroot: Path, state_dir: Path, *, post_log: Path | None = None,
                 addr: str = "127.0.0.1", port: int = 0, server_software: str = "ukweb-oracle",
                 reset: ResetParams | None = None, now: float | None = None) -> None:
        self.oracle = Oracle(Path(docroot), Path(state_dir), post_log=post_log,
                             server_software=server_software)
        if reset is not None:
            self.oracle.reset(reset, now if now is not None else time.time())
        handler = type("Handler", (_Handler,), {"oracle": self.oracle})
        self.httpd = ThreadingHTTPServer((addr, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}"

    def start(self) -> OracleServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> OracleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="SPECweb99 oracle HTTP server (tests only)")
    p.add_argument("--docroot", type=Path, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--post-log", type=Path)
    p.add_argument("--server-name", default="ukweb-oracle")
    args = p.parse_args(argv)
    if not args.docroot.is_dir():
        print(f"oracle_server: docroot {args.docroot} is not a directory", file=sys.stderr)
        return 2
    try:
        server = OracleServer(args.docroot, args.state_dir, post_log=args.post_log,
                              addr=args.addr, port=args.port, server_software=args.server_name)
    except OSError as e:
        print(f"oracle_server: cannot listen on {args.addr}:{args.port}: {e.strerror}",
              file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.httpd.shutdown).start())
    print(f"listening {args.addr}:{server.port}", flush=True)
    server.httpd.serve_forever()
    server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
