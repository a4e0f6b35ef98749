#!/usr/bin/env python3
"""An independent Avro implementation (fastavro) on Driftwatch's topics.

Acts as a team with its own tooling would: it knows only the `.avsc` files
and the Avro specification (single-object encoding: C3 01, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form, then the binary datum). tests/avro_interop.rs drives it.

  fastavro_interop.py fingerprints DIR   one line per schema under DIR:
                                          "<file> <wire hex> <pcf>"
  fastavro_interop.py write DIR           stdin: JSON lines {"schema": file,
                                          "record": {...}}; stdout: {"hex": ...}
  fastavro_interop.py read DIR            stdin: JSON lines {"hex": ...,
                                          "reader": file or null}; stdout:
                                          {"schema": writer file, "record": {...}}

Records are in fastavro's native shape, with timestamp-millis as integers
(milliseconds since the epoch) in and out.
"""
import datetime
import io
import json
import pathlib
import sys

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

MARKER = b"\xc3\x01"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def schemas(root):
    """Every .avsc under root: {relative path: (parsed schema, wire fingerprint bytes, pcf)}."""
    out = {}
    for path in sorted(pathlib.Path(root).rglob("*.avsc")):
        parsed = fastavro.parse_schema(json.loads(path.read_text()), _write_hint=False)
        pcf = to_parsing_canonical_form(parsed)
        out[str(path.relative_to(root))] = (parsed, bytes.fromhex(fingerprint(pcf, "CRC-64-AVRO")), pcf)
    return out


def millis(value):
    """Datetimes (timestamp-millis as fastavro reads them) back to integers."""
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {k: millis(v) for k, v in value.items()}
    if isinstance(value, list):
        return [millis(v) for v in value]
    return value


def write(known, line):
    parsed, fp, _ = known[line["schema"]]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, line["record"], strict=True)
    return {"hex": (MARKER + fp + body.getvalue()).hex()}


def read(known, line):
    data = bytes.fromhex(line["hex"])
    if data[:2] != MARKER:
        raise ValueError(f"no single-object marker: {data[:2].hex()}")
    by_fp = {fp: name for name, (_, fp, _) in known.items()}
    writer_name = by_fp.get(data[2:10])
    if writer_name is None:
        raise ValueError(f"unknown writer schema fingerprint {data[2:10].hex()}")
    writer = known[writer_name][0]
    reader = known[line["reader"]][0] if line.get("reader") else None
    body = io.BytesIO(data[10:])
    record = fastavro.schemaless_reader(body, writer, reader)
    left = len(data) - 10 - body.tell()
    if left:
        raise ValueError(f"{left} bytes left over after the datum")
    return {"schema": writer_name, "record": millis(record)}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("fingerprints", "write", "read"):
        sys.exit(__doc__)
    known = schemas(sys.argv[2])
    if sys.argv[1] == "fingerprints":
        for name, (_, fp, pcf) in known.items():
            print(name, fp.hex(), pcf)
        return
    step = write if sys.argv[1] == "write" else read
    for n, text in enumerate(sys.stdin, 1):
        try:
            print(json.dumps(step(known, json.loads(text))))
        except Exception as e:  # the test shows which line and why
            sys.exit(f"line {n}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
