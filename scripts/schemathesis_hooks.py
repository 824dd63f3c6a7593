"""Schemathesis hooks for scripts/schemathesis: send bodies the way a Sluice
pusher does.

- `Content-Encoding` is a header of the request, so a body is compressed as
  the generated header says (gzip, deflate) before it is sent; otherwise a
  schema-valid request would carry a header that lies about its body.
- `application/x-ndjson` is documented by the schema of each line (3.1 has
  no `itemSchema`): a value is sent as one line.
"""
import gzip
import json
import zlib

import schemathesis


def _encoded(ctx, data: bytes) -> bytes:
    headers = {str(k).lower(): str(v) for k, v in (ctx.case.headers or {}).items()}
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    return data


def _json(value) -> bytes:
    if isinstance(value, bytes):
        return value
    return json.dumps(value, default=str).encode()


@schemathesis.serializer("application/json")
def json_body(ctx, value):
    return _encoded(ctx, _json(value))


@schemathesis.serializer("application/x-ndjson")
def ndjson_body(ctx, value):
    return _encoded(ctx, _json(value) + b"\n")
