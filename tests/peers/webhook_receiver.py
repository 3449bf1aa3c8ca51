#!/usr/bin/env python3
"""A webhook receiver on Python's http.server: answers 200 to every POST and writes one JSON
line per request, {"path", "signature", "body"}, to OUT_FILE.

usage: webhook_receiver.py PORT OUT_FILE
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
out = open(OUT, "a", encoding="utf-8")


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        with lock:
            out.write(json.dumps({
                "path": self.path,
                "content_type": self.headers.get("content-type"),
                "signature": self.headers.get("x-recorder-signature"),
                "body": body.decode("utf-8"),
            }) + "\n")
            out.flush()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Hook).serve_forever()
