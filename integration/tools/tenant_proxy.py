#!/usr/bin/env python3
"""Forwards Prometheus remote-write requests to Thanos Receive with a THANOS-TENANT header.

  tenant_proxy.py --port 19964 --upstream http://127.0.0.1:19963/api/v1/receive --tenant t

Debian's Prometheus 2.42.0+ds parses `remote_write: [{headers: {THANOS-TENANT: t}}]` (its
/api/v1/status/config shows the header) but does not send it (measured: no such header on
the wire), so Receive files every sample under its default tenant. This stands where an
authenticating proxy stands in production, in front of Receive: it sets the tenant header on
every request that has none, and passes body, headers and answers through unchanged.

It is also the link a test cuts: `POST /-/cut` answers every remote write with 503 (as a
partition or a Receive rollout does: Prometheus keeps the samples in its WAL and retries),
`POST /-/heal` forwards again; `GET /-/cut` tells which (200 cut, 404 not).
"""

import argparse
import http.server
import sys
import threading
import urllib.error
import urllib.request

PASS = ("Content-Type", "Content-Encoding", "X-Prometheus-Remote-Write-Version", "User-Agent")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="Receive's remote-write URL")
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--header", default="THANOS-TENANT")
    args = ap.parse_args()
    cut = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, body=b""):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path in ("/-/cut", "/-/heal"):
                (cut.set if self.path == "/-/cut" else cut.clear)()
                print(f"link {self.path[3:]}", file=sys.stderr, flush=True)
                return self.answer(200)
            if cut.is_set():
                return self.answer(503, b"the link is cut (tenant_proxy.py /-/cut)\n")
            headers = {k: self.headers[k] for k in PASS if self.headers.get(k)}
            headers[args.header] = self.headers.get(args.header) or args.tenant
            req = urllib.request.Request(args.upstream, data=body, headers=headers,
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    status, answer = resp.status, resp.read()
            except urllib.error.HTTPError as e:
                status, answer = e.code, e.read()
            except OSError as e:
                status, answer = 503, f"upstream: {e}\n".encode()
            self.answer(status, answer)

        def do_GET(self):
            if self.path == "/-/cut":
                return self.answer(200 if cut.is_set() else 404)
            self.answer(200 if self.path == "/-/healthy" else 404)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"forwarding :{args.port} to {args.upstream} as tenant {args.tenant}", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
