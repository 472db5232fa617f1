#!/usr/bin/python3
"""Writes a deterministic directory tree of mixed data for bench/make-disk.sh.

    gen-tree.py ROOT PART_BYTES SEED PROFILE        PROFILE: esp | ext4 | ntfs

The tree fills roughly half of a partition of PART_BYTES with a realistic mix: copies of host
binaries (/usr/bin, shared libraries), host text files (/usr/share, Python and Perl sources),
large incompressible files, many small files (some text-like, some random), a mostly-zero file,
and "trash" files meant to be deleted after the filesystem is populated (their blocks stay
behind as garbage in free space). Trash files are interleaved with the kept ones so that the
garbage ends up scattered. Their relative paths are written to ROOT/../PROFILE.trash, one per
line.

Everything derived from SEED comes from random.Random(SEED) (stable across Python versions), and
host files are taken in sorted order, so the same host and arguments give the same tree. All
timestamps are set to a fixed time. Prints a one-line summary per category.
"""

import os
import random
import shutil
import stat
import sys

FIXED_TIME = 1_700_000_000
TEXT_EXT = {".py", ".pm", ".pl", ".txt", ".html", ".css", ".xml", ".json", ".sh", ".conf",
            ".rst", ".md", ".h", ".c", ".js", ".desc", ".list", ".csv", ".ini", ".tcl"}
WORDS = ("disk image restore partition block sector volume backup verify checksum cluster "
         "inode extent journal bitmap superblock table entry header lifeboat rescue boot "
         "kernel module driver device error warning info debug user system network the of "
         "and to in is was for on with as by at from this that").split()

PROFILES = {
    # category: fraction of the partition size
    "esp": {"bins": 0.14, "text": 0.04, "large": 0.32, "small": 0.02, "zeroish": 0.0,
            "trash": 0.08},
    "ext4": {"bins": 0.12, "text": 0.10, "large": 0.15, "small": 0.04, "zeroish": 0.05,
             "trash": 0.15},
    "ntfs": {"bins": 0.12, "text": 0.10, "large": 0.15, "small": 0.06, "zeroish": 0.04,
             "trash": 0.15},
}
LAYOUT = {
    "esp": {"bins": "EFI/BOOT", "text": "EFI/debian", "large": "", "small": "loader/entries",
            "zeroish": "", "large_names": ["vmlinuz-6.1.0-lifeboat", "initrd.img-6.1.0-lifeboat"]},
    "ext4": {"bins": "usr/bin", "text": "usr/share/doc", "large": "var/lib/media",
             "small": "home/user/notes", "zeroish": "var/lib/vm",
             "large_names": ["video1.mkv", "archive.tar.xz", "photos.zip", "backup.7z"]},
    "ntfs": {"bins": "Program Files/App", "text": "Users/me/Documents", "large": "Users/me/Videos",
             "small": "Users/me/AppData/Cache", "zeroish": "ProgramData/VM",
             "large_names": ["holiday.mp4", "setup.msi", "pictures.zip", "game.pak"]},
}


def host_files(roots, keep, max_size):
    """Regular files under roots, in sorted order, for which keep(path) is true."""
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and 0 < st.st_size <= max_size and keep(path):
                    yield path, st.st_size


class Tree:
    def __init__(self, root, seed, trash_fraction):
        self.root = root
        self.rng = random.Random(seed)
        self.trash = []
        self.trash_left = 0
        self.trash_every = 0
        self.trash_fraction = trash_fraction
        self.n = 0

    def path(self, rel):
        full = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    def write(self, rel, data):
        with open(self.path(rel), "wb") as f:
            f.write(data)
        self._maybe_trash(os.path.dirname(rel), len(data))

    def copy(self, rel, src):
        shutil.copyfile(src, self.path(rel))
        self._maybe_trash(os.path.dirname(rel), os.path.getsize(src))

    def _maybe_trash(self, reldir, kept_size):
        """After a kept file, write trash of about trash_fraction of its size beside it."""
        if self.trash_left <= 0:
            return
        want = min(self.trash_left, int(kept_size * self.trash_fraction))
        if want < 4096:
            return
        self.n += 1
        rel = os.path.join(reldir, f".~tmp{self.n:05d}.del")
        with open(self.path(rel), "wb") as f:
            # half random, half text: garbage that compresses like real deleted data
            f.write(self.rng.randbytes(want // 2))
            f.write(text_like(self.rng, want - want // 2))
        self.trash.append(rel)
        self.trash_left -= want


def text_like(rng, size):
    out = bytearray()
    while len(out) < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        out += f"{rng.randint(0, 99999):05d} {line}\n".encode()
    return bytes(out[:size])


def fill_copies(tree, reldir, budget, sources):
    """Copies host files (cycling if the host has too few) until budget bytes are used."""
    used, files, rounds = 0, 0, 0
    sources = list(sources)
    if not sources:
        return 0, 0
    while used < budget and rounds < 50:
        for path, size in sources:
            if used + size > budget:
                continue
            name = os.path.basename(path) + (f".{rounds}" if rounds else "")
            tree.copy(os.path.join(reldir, name), path)
            used += size
            files += 1
        rounds += 1
        if all(used + size > budget for _, size in sources):
            break
    return used, files


def main():
    root, part_bytes, seed, profile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    fr, lay = PROFILES[profile], LAYOUT[profile]
    os.makedirs(root, exist_ok=True)
    kept = sum(v for k, v in fr.items() if k != "trash")
    tree = Tree(root, seed, fr["trash"] / kept)
    tree.trash_left = int(part_bytes * fr["trash"])
    summary = {}

    # binaries
    if profile == "ntfs":
        bins = host_files(["/usr/lib/x86_64-linux-gnu"], lambda p: ".so" in p, 8 << 20)
    else:
        bins = host_files(["/usr/bin"], lambda p: True, 8 << 20)
    summary["bins"] = fill_copies(tree, lay["bins"], int(part_bytes * fr["bins"]), bins)

    # text
    text = host_files(["/usr/share", "/usr/lib/python3", "/usr/share/perl"],
                      lambda p: os.path.splitext(p)[1] in TEXT_EXT, 512 << 10)
    if profile == "esp":
        text = host_files(["/usr/share/common-licenses", "/usr/share/doc"],
                          lambda p: True, 256 << 10)
    summary["text"] = fill_copies(tree, lay["text"], int(part_bytes * fr["text"]), text)

    # large incompressible files, unequal sizes
    budget = int(part_bytes * fr["large"])
    names = lay["large_names"]
    weights = [0.4, 0.3, 0.2, 0.1][: len(names)]
    total_w = sum(weights)
    used = 0
    for name, w in zip(names, weights):
        size = int(budget * w / total_w) // 4096 * 4096
        with open(tree.path(os.path.join(lay["large"], name)), "wb") as f:
            left = size
            while left:
                chunk = min(left, 8 << 20)
                f.write(tree.rng.randbytes(chunk))
                left -= chunk
        tree._maybe_trash(lay["large"], size)
        used += size
    summary["large"] = (used, len(names))

    # many small files: 60% text-like, 40% random, 200 B .. 24 KiB, in subdirectories
    budget = int(part_bytes * fr["small"])
    used = files = 0
    while used < budget:
        size = int(tree.rng.paretovariate(1.2) * 600) % (24 << 10) + 200
        data = text_like(tree.rng, size) if tree.rng.random() < 0.6 else tree.rng.randbytes(size)
        rel = os.path.join(lay["small"], f"d{files // 200:03d}", f"f{files:06d}.dat")
        tree.write(rel, data)
        used += size
        files += 1
    summary["small"] = (used, files)

    # a mostly-zero file (like a VM disk or a database with free pages): 1 MiB in 8 has data
    budget = int(part_bytes * fr["zeroish"]) // (1 << 20) * (1 << 20)
    if budget:
        with open(tree.path(os.path.join(lay["zeroish"], "disk.img")), "wb") as f:
            for mib in range(budget >> 20):
                if mib % 8 == 0:
                    f.write(text_like(tree.rng, 1 << 20))
                else:
                    f.write(bytes(1 << 20))
        summary["zeroish"] = (budget, 1)

    # any trash budget left over goes into one last directory
    n = 0
    while tree.trash_left >= 4096:
        size = min(tree.trash_left, 16 << 20)
        rel = os.path.join("tmp", f"cache{n:03d}.del")
        with open(tree.path(rel), "wb") as f:
            f.write(tree.rng.randbytes(size))
        tree.trash.append(rel)
        tree.trash_left -= size
        n += 1

    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (FIXED_TIME, FIXED_TIME), follow_symlinks=False)
    os.utime(root, (FIXED_TIME, FIXED_TIME))

    with open(os.path.join(os.path.dirname(os.path.abspath(root)), profile + ".trash"), "w") as f:
        f.writelines(p + "\n" for p in tree.trash)
    trash_bytes = sum(os.path.getsize(os.path.join(root, p)) for p in tree.trash)
    for k, (b, n) in summary.items():
        print(f"  {profile} {k:8s} {b / 2**20:8.1f} MiB in {n} files")
    print(f"  {profile} trash    {trash_bytes / 2**20:8.1f} MiB in {len(tree.trash)} files "
          "(deleted after population)")


if __name__ == "__main__":
    main()
