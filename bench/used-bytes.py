#!/usr/bin/python3
"""Copies the disk ranges a lifeboat image holds from DEVICE to stdout, in index order.

    used-bytes.py IMAGE.lbi DEVICE > used.raw

The output is exactly the bytes a restore of IMAGE writes (every record, zero records
included), so `dd`/`zstd` over it give the floors bench/restore.sh compares lifeboat with.
It reads the footer and the index as docs/FORMAT.md gives them (single-file images only)
and checks the magics and the index CRC. The total and the record count go to stderr.
"""

import os
import struct
import sys
import zlib

FOOTER_LEN, RECORD_LEN, STEP = 128, 64, 4 << 20


def records(path):
    with open(path, "rb") as f:
        if struct.unpack_from("<I", f.read(16), 12)[0] & 1:
            sys.exit(f"used-bytes: {path} is split into volumes; not supported")
        f.seek(-FOOTER_LEN, os.SEEK_END)
        footer = f.read(FOOTER_LEN)
        if footer[:8] != b"LBFOOTER" or zlib.crc32(footer[:124]) != struct.unpack_from("<I", footer, 124)[0]:
            sys.exit(f"used-bytes: {path} has no valid footer (not a complete image)")
        index_off, index_len, count, raw_total = struct.unpack_from("<QQQQ", footer, 24)
        f.seek(index_off)
        index = f.read(index_len)
    if index[:8] != b"LBINDEX\0" or struct.unpack_from("<Q", index, 8)[0] != count:
        sys.exit(f"used-bytes: {path}: bad index header")
    body = index[: 16 + count * RECORD_LEN]
    if zlib.crc32(body) != struct.unpack_from("<I", index, len(body))[0]:
        sys.exit(f"used-bytes: {path}: index CRC mismatch")
    recs = [struct.unpack_from("<QI", index, 16 + i * RECORD_LEN) for i in range(count)]
    if sum(n for _, n in recs) != raw_total:
        sys.exit(f"used-bytes: {path}: records do not add up to the footer's raw bytes")
    return recs


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: used-bytes.py IMAGE.lbi DEVICE > used.raw")
    recs = records(sys.argv[1])
    # records touching each other are read as one range, in pieces of at most STEP bytes
    runs = []
    for off, n in recs:
        if runs and runs[-1][0] + runs[-1][1] == off:
            runs[-1][1] += n
        else:
            runs.append([off, n])
    out = sys.stdout.buffer
    fd = os.open(sys.argv[2], os.O_RDONLY)
    total = 0
    for off, n in runs:
        end = off + n
        while off < end:
            buf = os.pread(fd, min(STEP, end - off), off)
            if not buf:
                sys.exit(f"used-bytes: {sys.argv[2]} ends at {off}, before {end}")
            out.write(buf)
            off += len(buf)
            total += len(buf)
    out.flush()
    os.close(fd)
    print(f"used-bytes: {len(recs)} records, {len(runs)} runs, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
