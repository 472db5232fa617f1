#!/usr/bin/python3
"""faultfs: a one-file FUSE filesystem that injects disk faults, for Lifeboat's tests.

The host kernel has no device-mapper, so dm-error / dm-flakey / dm-dust are not available.
Instead this exposes MNT/disk, a pass-through view of a real BACKING file, and fails chosen
requests. Put a loop device on top (`losetup -f --show [--direct-io=on] MNT/disk`) and the
loop device returns the same errors to whoever reads or writes it.

Usage (runs in the foreground until unmounted or sent SIGTERM/SIGINT):

    /usr/bin/python3 tests/helpers/faultfs.py BACKING MNT CONTROL

CONTROL is a JSON object, re-read on every read/write request, so faults can be switched on
and off while the device is in use. Every key is optional:

    {
      "bad_read":     [[start, len], ...],  # a read overlapping any byte range -> EIO
      "flaky_read":   [[start, len, n], ...],  # the first n reads overlapping the range
                                            # fail with EIO, later ones succeed (n counts
                                            # per range, over the life of the process)
      "slow_read":    [[start, len, secs], ...],  # a read overlapping the range sleeps
                                            # secs first (a hang: more than the reader's
                                            # timeout), then is served normally
      "bad_write":    [[start, len], ...],  # a write overlapping any byte range -> EIO
      "enospc_after": N or null,            # a write reaching past byte N -> ENOSPC
      "drop_writes":  false                 # true: report writes as done but discard them;
                                            # [[start, len], ...]: only the bytes inside
    }

Offsets are bytes in the backing file (= bytes on the loop device). A missing or empty
CONTROL means no faults. Replace CONTROL atomically (write a temp file, then rename it):
a CONTROL that does not parse is ignored and the last good one stays in force (a warning is
printed once per bad version).

Counters of injected faults are written to CONTROL + ".stats" (JSON, replaced atomically)
after each injected fault, so a test can check that its fault was really hit:
{"read_eio": n, "write_eio": n, "enospc": n, "dropped": n, "reads": n, "writes": n, "slow": n}
("reads"/"writes" count requests served; they are current as of the last fault).

Notes for loop devices on top:
  * The file is opened with FUSE direct_io, so the kernel never serves MNT/disk from the page
    cache: every read of the loop device (with O_DIRECT on the loop device, or after the loop
    device's own cache is dropped) reaches this process and can fail.
  * The size is fixed (that of BACKING); writes past the end fail with ENOSPC, truncate to
    another size fails with EPERM.
  * Requests are at most 128 KiB (max_read/max_write), served by several threads with
    pread/pwrite on one descriptor, which are safe to run concurrently.
"""

import errno
import json
import os
import stat
import sys
import tempfile
import threading
import time

from fusepy import FUSE, FuseOSError, Operations

DISK = "/disk"
MAX_IO = 128 * 1024


def overlaps(ranges, offset, length):
    """True if [offset, offset+length) overlaps any [start, start+len) in ranges."""
    end = offset + length
    for rng in ranges or ():
        start, size = int(rng[0]), int(rng[1])
        if size > 0 and offset < start + size and start < end:
            return True
    return False


class Control:
    """The parsed CONTROL file; the last good version survives a bad one."""

    def __init__(self, path):
        self.path = path
        self.good = {}
        self.key = None
        self.warned = None
        self.lock = threading.Lock()

    def get(self):
        # parsed again only when the file changed (tests replace it by rename): a stat per
        # request instead of a read and a parse keeps small reads cheap
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return {}
        except OSError:
            key = None
        if key is not None and key == self.key:
            return self.good
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        except OSError as e:
            self._warn(raw_key=("oserror", e.errno), msg=f"cannot read {self.path}: {e}")
            return self.good
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            self._warn(raw_key=raw, msg=f"ignoring unparsable {self.path}: {e}")
            return self.good
        with self.lock:
            self.good = value
            self.key = key
        return value

    def _warn(self, raw_key, msg):
        with self.lock:
            if self.warned == raw_key:
                return
            self.warned = raw_key
        print(f"faultfs: {msg}", file=sys.stderr, flush=True)


class FaultFS(Operations):
    use_ns = True

    def __init__(self, backing, control):
        self.fd = os.open(backing, os.O_RDWR)
        self.size = os.fstat(self.fd).st_size
        self.control = Control(control)
        self.stats_path = control + ".stats"
        self.stats = {"read_eio": 0, "write_eio": 0, "enospc": 0, "dropped": 0,
                      "reads": 0, "writes": 0, "slow": 0}
        self.stats_lock = threading.Lock()
        # failures left per flaky range, keyed by (start, len)
        self.flaky_used = {}

    # --- bookkeeping -------------------------------------------------------------------------

    def _count(self, key, fault=True):
        with self.stats_lock:
            self.stats[key] += 1
            if not fault:
                return
            snapshot = json.dumps(self.stats)
            directory = os.path.dirname(os.path.abspath(self.stats_path))
            try:
                fd, tmp = tempfile.mkstemp(prefix=".faultfs-stats.", dir=directory)
                with os.fdopen(fd, "w") as f:
                    f.write(snapshot + "\n")
                os.replace(tmp, self.stats_path)
            except OSError as e:
                print(f"faultfs: cannot write {self.stats_path}: {e}", file=sys.stderr)

    # --- metadata ----------------------------------------------------------------------------

    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if path != DISK:
            raise FuseOSError(errno.ENOENT)
        st = os.fstat(self.fd)
        return {
            "st_mode": stat.S_IFREG | 0o600,
            "st_nlink": 1,
            "st_size": self.size,
            "st_blocks": st.st_blocks,
            "st_atime": st.st_atime_ns,
            "st_mtime": st.st_mtime_ns,
            "st_ctime": st.st_ctime_ns,
        }

    def readdir(self, path, fh):
        if path != "/":
            raise FuseOSError(errno.ENOTDIR)
        return [".", "..", DISK[1:]]

    def statfs(self, path):
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": self.size // 4096,
                "f_bfree": 0, "f_bavail": 0, "f_namemax": 255}

    def access(self, path, amode):
        if path not in ("/", DISK):
            raise FuseOSError(errno.ENOENT)
        return 0

    def open(self, path, flags):
        if path != DISK:
            raise FuseOSError(errno.ENOENT)
        return 0

    def create(self, path, mode, fi=None):
        raise FuseOSError(errno.EPERM)

    def truncate(self, path, length, fh=None):
        if path != DISK:
            raise FuseOSError(errno.ENOENT)
        if length != self.size:
            raise FuseOSError(errno.EPERM)  # a disk has a fixed size
        return 0

    def chmod(self, path, mode):
        return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        return 0

    # --- data --------------------------------------------------------------------------------

    def read(self, path, size, offset, fh):
        ctl = self.control.get()
        for rng in ctl.get("slow_read") or ():
            if overlaps([rng[:2]], offset, size):
                self._count("slow", fault=True)
                time.sleep(float(rng[2]))
        if overlaps(ctl.get("bad_read"), offset, size):
            self._count("read_eio")
            raise FuseOSError(errno.EIO)
        for rng in ctl.get("flaky_read") or ():
            if overlaps([rng[:2]], offset, size):
                key = (int(rng[0]), int(rng[1]))
                with self.stats_lock:
                    used = self.flaky_used.get(key, 0)
                    fail = used < int(rng[2])
                    if fail:
                        self.flaky_used[key] = used + 1
                if fail:
                    self._count("read_eio")
                    raise FuseOSError(errno.EIO)
        self._count("reads", fault=False)
        return os.pread(self.fd, size, offset)

    def write(self, path, data, offset, fh):
        ctl = self.control.get()
        length = len(data)
        if overlaps(ctl.get("bad_write"), offset, length):
            self._count("write_eio")
            raise FuseOSError(errno.EIO)
        limit = ctl.get("enospc_after")
        if offset + length > self.size or (limit is not None and offset + length > int(limit)):
            self._count("enospc")
            raise FuseOSError(errno.ENOSPC)
        self._count("writes", fault=False)
        drop = ctl.get("drop_writes")
        if drop is True:
            self._count("dropped")
            return length
        if isinstance(drop, list) and overlaps(drop, offset, length):
            # the bytes inside the ranges keep their old content; the rest is written
            self._count("dropped")
            kept = bytearray(data)
            old = os.pread(self.fd, length, offset)
            for start, rlen in drop:
                lo, hi = max(start, offset), min(start + rlen, offset + length)
                if lo < hi:
                    kept[lo - offset:hi - offset] = old[lo - offset:hi - offset]
            data = bytes(kept)
        done = 0
        while done < length:
            done += os.pwrite(self.fd, data[done:], offset + done)
        return length

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(self.fd)
        else:
            os.fsync(self.fd)
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return 0

    def destroy(self, path):
        os.fsync(self.fd)
        os.close(self.fd)


def main(argv):
    if len(argv) != 4:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        print("usage: faultfs.py BACKING MNT CONTROL", file=sys.stderr)
        return 2
    backing, mnt, control = argv[1:4]
    if not os.path.isfile(backing):
        print(f"faultfs: {backing} is not a regular file", file=sys.stderr)
        return 2
    if not os.path.isdir(mnt):
        print(f"faultfs: {mnt} is not a directory", file=sys.stderr)
        return 2
    ops = FaultFS(backing, os.path.abspath(control))
    FUSE(
        ops,
        mnt,
        foreground=True,
        nothreads=False,
        fsname="faultfs",
        subtype="faultfs",
        direct_io=True,        # no page cache for MNT/disk: every request reaches us
        big_writes=True,       # libfuse2 splits writes into 4 KiB without this
        max_write=MAX_IO,
        max_read=MAX_IO,
        attr_timeout=0,
        entry_timeout=0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
