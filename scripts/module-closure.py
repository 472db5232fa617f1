#!/usr/bin/env python3
"""Prints the kernel modules (paths relative to MODDIR) that LIST names, with everything they
depend on (modules.dep) and their softdeps (modules.softdep), one per line, sorted.

Usage: module-closure.py MODDIR LIST
LIST lines are module names ("sd_mod") or directories under MODDIR ending in "/"
("kernel/drivers/ata/"); "# ..." starts a comment. A name that matches no module fails the
build unless it is built into the kernel (modules.builtin).
"""
import fnmatch
import os
import sys


def norm(name):
    return name.replace("-", "_")


def stem(path):
    base = os.path.basename(path)
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            return norm(base[: -len(ext)])
    return norm(base)


def main():
    moddir, listfile = sys.argv[1], sys.argv[2]
    deps, by_name = {}, {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[path] = rest.split()
            by_name[stem(path)] = path
    builtin = set()
    with open(os.path.join(moddir, "modules.builtin")) as f:
        builtin = {stem(line.strip()) for line in f if line.strip()}
    softdeps = {}
    with open(os.path.join(moddir, "modules.softdep")) as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and words[0] == "softdep":
                softdeps[norm(words[1])] = [norm(w) for w in words[2:] if not w.endswith(":")]
    aliases = []
    with open(os.path.join(moddir, "modules.alias")) as f:
        for line in f:
            words = line.split()
            if len(words) == 3 and words[0] == "alias":
                aliases.append((words[1], norm(words[2])))

    def resolve(name):
        if norm(name) in by_name:
            return [by_name[norm(name)]]
        return [by_name[m] for pat, m in aliases if m in by_name and fnmatch.fnmatchcase(name, pat)]

    wanted, missing = [], []
    with open(listfile) as f:
        for raw in f:
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            if entry.endswith("/"):
                found = [p for p in deps if p.startswith(entry)]
            elif entry.endswith((".ko", ".ko.xz", ".ko.zst")):
                found = [entry] if entry in deps else []
            else:
                found = resolve(entry)
            if not found and stem(entry) not in builtin:
                missing.append(entry)
            wanted.extend(found)
    if missing:
        sys.exit("module-closure: not in this kernel: " + ", ".join(missing))

    closure, stack = set(), list(wanted)
    while stack:
        path = stack.pop()
        if path in closure:
            continue
        closure.add(path)
        stack.extend(deps.get(path, []))
        for soft in softdeps.get(stem(path), []):
            stack.extend(resolve(soft))
    for path in sorted(closure):
        print(path)


main()
