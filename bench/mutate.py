#!/usr/bin/env python3
"""Change about PCT% of the used data of a mounted filesystem, like a day of use:
modify parts of existing files in place, add new files, delete some files.

usage: mutate.py MOUNTPOINT --pct 1 --seed N --capture FILE

Every byte written (modified ranges and new files) is appended to FILE, so the caller can
measure the changed data and its compressed size. Prints one JSON line:
{"modified": bytes, "added": bytes, "deleted": bytes, "files": n}.
Deterministic for a given tree and seed.
"""
import argparse
import json
import os
import random


def data(rng, n):
    # Half text-like, half incompressible, like real files.
    if rng.random() < 0.5:
        words = [b"lifeboat", b"disk", b"image", b"chain", b"restore", b"block", b"\n"]
        out = bytearray()
        while len(out) < n:
            out += rng.choice(words) + b" "
        return bytes(out[:n])
    return rng.randbytes(n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mount")
    ap.add_argument("--pct", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--capture", required=True)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    st = os.statvfs(a.mount)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    budget = int(used * a.pct / 100)
    files = []
    for root, dirs, names in os.walk(a.mount):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(root, n)
            if os.path.isfile(p) and not os.path.islink(p):
                files.append((p, os.path.getsize(p)))
    rng.shuffle(files)
    big = [f for f in files if f[1] >= 16384]
    stats = {"modified": 0, "added": 0, "deleted": 0, "files": 0}
    touched = set()
    with open(a.capture, "ab") as cap:
        # 45%: rewrite a range inside existing files.
        while stats["modified"] < budget * 0.45 and big:
            p, size = big.pop()
            n = min(size, rng.choice([4096, 16384, 65536, 262144, 1 << 20]))
            at = rng.randrange(0, size - n + 1) // 4096 * 4096
            b = data(rng, n)
            with open(p, "r+b") as f:
                f.seek(at)
                f.write(b)
            cap.write(b)
            touched.add(p)
            stats["modified"] += n
            stats["files"] += 1
        # 45%: new files.
        new_dir = os.path.join(a.mount, f"new-{a.seed}")
        os.makedirs(new_dir, exist_ok=True)
        i = 0
        while stats["added"] < budget * 0.45:
            n = rng.choice([2000, 8192, 30000, 120000, 500000, 2 << 20])
            b = data(rng, n)
            with open(os.path.join(new_dir, f"file-{i}.dat"), "wb") as f:
                f.write(b)
            cap.write(b)
            stats["added"] += n
            stats["files"] += 1
            i += 1
        # Delete files worth about 10% of the budget.
        small = [f for f in files if f[1] < 1 << 20 and f[0] not in touched]
        while stats["deleted"] < budget * 0.10 and small:
            p, size = small.pop()
            os.remove(p)
            stats["deleted"] += size
            stats["files"] += 1
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
