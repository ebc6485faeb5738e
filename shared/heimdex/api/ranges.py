"""HTTP Range requests (RFC 9110, section 14) for media the API streams itself, so that a player can
seek: one byte range per request, as players send.

- no Range, a range unit other than `bytes` (14.2: MUST ignore), an If-Range that does not match, or a
  ranges-specifier that is malformed, reversed (last < first, 14.1.1: invalid) or asks for several
  ranges (14.2: MAY ignore): the whole representation, 200;
- one satisfiable range: 206 with `Content-Range: bytes first-last/size`, the last position clipped to
  the end (14.1.1);
- one range that starts at or past the end, or a zero-length suffix: 416 with `Content-Range: bytes
  */size` (15.5.17).
Werkzeug's own conditional responses answer 416 for an unknown unit or a malformed header, which
RFC 9110 tells a server to ignore; hence this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_SPEC = re.compile(r"[ \t]*(?:([0-9]{1,19})[ \t]*-[ \t]*([0-9]{0,19})|-[ \t]*([0-9]{1,19}))[ \t]*")
CHUNK = 256 * 1024


@dataclass(frozen=True)
class ByteRange:
    """status 200 (whole), 206 (first..last inclusive) or 416."""

    status: int
    first: int = 0
    last: int = -1

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def byte_range(
    header: str | None, size: int, *, if_range: str | None = None, etag: str | None = None
) -> ByteRange:
    whole = ByteRange(200, 0, size - 1)
    if header is None or (if_range is not None and if_range != etag):
        return whole
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return whole
    parts = spec.split(",")
    if len(parts) != 1:
        return whole
    m = _SPEC.fullmatch(parts[0])
    if m is None:
        return whole
    first_s, last_s, suffix_s = m.groups()
    if suffix_s is not None:
        n = int(suffix_s)
        if n == 0 or size == 0:
            return ByteRange(416)
        return ByteRange(206, max(0, size - n), size - 1)
    first = int(first_s)
    last = int(last_s) if last_s else None
    if last is not None and last < first:
        return whole  # invalid (14.1.1): ignored
    if first >= size:
        return ByteRange(416)
    return ByteRange(206, first, size - 1 if last is None else min(last, size - 1))


def file_chunks(path: str, first: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(first)
        left = length
        while left > 0:
            data = fh.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


def bytes_chunks(read: Callable[[], bytes], first: int, length: int) -> Iterator[bytes]:
    yield read()[first : first + length]
