#!/usr/bin/env python3
"""Writes the recorded SQL fixtures as fuzz seeds: fuzz/corpus/{postgres,mysql}/<fixture>,
and a few hand-made HTTP/1.1, HTTP/2 and HPACK streams: fuzz/corpus/http/.

Seed format (see fuzz_targets/common.rs): records of a header byte (bit 0: direction, 0 = to
the server; bits 1..8: length 0..127) followed by that many bytes.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "recorder-user", "protocol", "tests", "fixtures", "sql")

for name in sorted(os.listdir(FIXTURES)):
    if not name.endswith(".bin"):
        continue
    target = "postgres" if name.startswith("pg_") else "mysql"
    raw = open(os.path.join(FIXTURES, name), "rb").read()
    seed, i = bytearray(), 0
    while i < len(raw):
        direction, length = struct.unpack("<BI", raw[i:i + 5])
        chunk = raw[i + 5:i + 5 + length]
        i += 5 + length
        for j in range(0, len(chunk), 127):
            part = chunk[j:j + 127]
            seed.append((len(part) << 1) | (direction & 1))
            seed += part
    os.makedirs(os.path.join(HERE, "corpus", target), exist_ok=True)
    with open(os.path.join(HERE, "corpus", target, name[:-4]), "wb") as f:
        f.write(seed)


# Seeds of the `http` target (mode byte first, see fuzz_targets/http.rs).
def records(chunks):
    out = bytearray()
    for direction, chunk in chunks:
        for j in range(0, len(chunk), 127):
            part = chunk[j:j + 127]
            out.append((len(part) << 1) | direction)
            out += part
    return bytes(out)


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


H1 = [
    (0, b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: k8s\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n4;x=y\r\nbody\r\n0\r\nT: v\r\n\r\n"
        b"HEAD /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"),
    (1, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
]
REQUEST = literal(b":method", b"GET") + b"\x87" + literal(b":path", b"/api/v1/pods?limit=500") \
    + literal(b":authority", b"k8s:6443")
H2 = [
    (0, frame(4, 0, 0, b"\x00\x01\x00\x00\x10\x00") + frame(1, 0x4, 1, REQUEST)
        + frame(1, 0x8 | 0x20, 3, b"\x02\x00\x00\x00\x01\x10" + REQUEST[:5] + b"\x00\x00")
        + frame(9, 0x4, 3, REQUEST[5:])
        + frame(3, 0, 3, b"\x00\x00\x00\x08")),
    (1, frame(4, 0, 0, b"") + frame(1, 0x4, 1, b"\x48\x03\x34\x30\x34") + frame(0, 1, 1, b"{}")
        + frame(5, 0x4, 1, b"\x00\x00\x00\x02\x82\x84") + frame(7, 0, 0, b"\x00\x00\x00\x01\x00\x00\x00\x00")),
]
# RFC 7541 C.4 request blocks and C.6 response blocks.
HPACK = [
    (0, bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")),
    (1, bytes.fromhex("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3")),
    (0, bytes.fromhex("828684be5886a8eb10649cbf")),
    (1, bytes.fromhex("4883640effc1c0bf")),
]
os.makedirs(os.path.join(HERE, "corpus", "http"), exist_ok=True)
for name, mode, chunks in [("h1", 0, H1), ("h2_frames", 1, H2), ("hpack_rfc", 2, HPACK)]:
    with open(os.path.join(HERE, "corpus", "http", name), "wb") as f:
        f.write(bytes([mode]) + records(chunks))
