"""Confluent's wire format, read and written by fastavro (an Avro
implementation independent of Driftwatch's), as Kafka Connect's and
ksqlDB's deserializers frame it: byte 0, the schema's registry id (4
bytes, big-endian), the schemaless Avro datum.

  confluent_framing.py read SCHEMA_FILE HEX      -> the record as JSON
  confluent_framing.py write SCHEMA_FILE ID JSON -> the framed record, hex
"""
import io
import json
import struct
import sys

import fastavro


def schema(path):
    return fastavro.parse_schema(json.load(open(path)))


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "read":
        data = bytes.fromhex(sys.argv[3])
        magic, schema_id = struct.unpack(">bI", data[:5])
        assert magic == 0, f"magic byte {magic}"
        record = fastavro.schemaless_reader(io.BytesIO(data[5:]), schema(path))
        print(json.dumps({"schema_id": schema_id, "record": record}, default=str))
    elif mode == "write":
        out = io.BytesIO()
        out.write(struct.pack(">bI", 0, int(sys.argv[3])))
        fastavro.schemaless_writer(out, schema(path), json.loads(sys.argv[4]))
        print(out.getvalue().hex())
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
