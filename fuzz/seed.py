#!/usr/bin/env python3
"""Writes the recorded SQL fixtures as fuzz seeds: fuzz/corpus/{postgres,mysql}/<fixture>.

Seed format (see fuzz_targets/common.rs): records of a header byte (bit 0: direction, 0 = to
the server; bits 1..8: length 0..127) followed by that many bytes.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "recorder-user", "tests", "fixtures", "sql")

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
