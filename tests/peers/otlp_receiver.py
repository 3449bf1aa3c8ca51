#!/usr/bin/env python3
"""An OTLP logs receiver built on the official generated classes (PyPI opentelemetry-proto)
and grpcio: LogsService/Export over gRPC (TLS when a certificate is given) and POST /v1/logs
over HTTP with application/x-protobuf. Each log record received is written as one JSON line
with every attribute's protobuf value kind, so a test can check names, values and types.

usage: otlp_receiver.py GRPC_PORT HTTP_PORT OUT_FILE [CERT KEY]

With OTLP_RECEIVER_COUNT=1 (the benchmark) each request is decoded and only the number of
log records is written, one line per request.
"""
import os
import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

GRPC_PORT, HTTP_PORT, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
out = open(OUT, "a", encoding="utf-8")


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [kind, [value(x) for x in v.array_value.values]]
    if kind == "kvlist_value":
        return [kind, {kv.key: value(kv.value) for kv in v.kvlist_value.values}]
    if kind is None:
        return [None, None]
    return [kind, getattr(v, kind)]


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


COUNT_ONLY = os.environ.get("OTLP_RECEIVER_COUNT") == "1"


def dump(request, transport):
    if COUNT_ONLY:
        n = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        with lock:
            out.write(f"{n}\n")
            out.flush()
        return
    with lock:
        for rl in request.resource_logs:
            resource = attributes(rl.resource.attributes)
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    out.write(json.dumps({
                        "transport": transport,
                        "resource": resource,
                        "scope": sl.scope.name,
                        "time_unix_nano": lr.time_unix_nano,
                        "observed_time_unix_nano": lr.observed_time_unix_nano,
                        "severity_number": lr.severity_number,
                        "severity_text": lr.severity_text,
                        "event_name": lr.event_name,
                        "body": value(lr.body),
                        "attributes": attributes(lr.attributes),
                    }) + "\n")
        out.flush()


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def Export(self, request, context):
        dump(request, "grpc")
        return logs_service_pb2.ExportLogsServiceResponse()


class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/v1/logs":
            self.send_error(404)
            return
        if self.headers.get("content-type") != "application/x-protobuf":
            self.send_error(415)
            return
        body = self.rfile.read(int(self.headers["content-length"]))
        request = logs_service_pb2.ExportLogsServiceRequest()
        request.ParseFromString(body)
        dump(request, "http")
        answer = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
if len(sys.argv) > 5:
    with open(sys.argv[4], "rb") as c, open(sys.argv[5], "rb") as k:
        creds = grpc.ssl_server_credentials([(k.read(), c.read())])
    server.add_secure_port(f"127.0.0.1:{GRPC_PORT}", creds)
else:
    server.add_insecure_port(f"127.0.0.1:{GRPC_PORT}")
server.start()
ThreadingHTTPServer(("127.0.0.1", HTTP_PORT), Http).serve_forever()
