#!/usr/bin/python3
"""Turns the records of bench/run.sh into a Markdown report and a JSON file.

    report.py RECORDS.tsv OUT.json --disk PATH --disk-bytes N --level L --runs N --threads N
              --lifeboat PATH --parts "p1:vfat ..." --failed "image:tool ..."

RECORDS.tsv lines: phase, tool, run, wall_s, rss_sum_kib, rss_max_kib, processes, size_bytes.
Medians are taken over runs for wall time and both RSS figures; the image size is the median
too (the tools are deterministic, so all runs should agree).
"""

import argparse
import datetime
import json
import platform
import statistics
import subprocess

MB = 1e6


def tool_version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0].strip() if text else None
    except (OSError, subprocess.SubprocessError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("records")
    ap.add_argument("out")
    ap.add_argument("--disk", required=True)
    ap.add_argument("--disk-bytes", type=int, required=True)
    ap.add_argument("--level", type=int, required=True)
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--lifeboat", required=True)
    ap.add_argument("--parts", default="")
    ap.add_argument("--failed", default="")
    ap.add_argument("--fsarchiver-parts", default="")
    ap.add_argument("--note", nargs="*", default=[])
    a = ap.parse_args()

    runs = {}
    with open(a.records) as f:
        for line in f:
            phase, tool, run, wall, rss_sum, rss_max, procs, size = line.rstrip("\n").split("\t")
            runs.setdefault((phase, tool), []).append({
                "run": int(run), "wall_s": float(wall), "rss_sum_kib": int(rss_sum),
                "rss_max_kib": int(rss_max), "processes": int(procs), "size_bytes": int(size)})

    def summary(phase, tool):
        rs = runs.get((phase, tool))
        if not rs:
            return None
        return {
            "runs": rs,
            "wall_s_median": statistics.median(r["wall_s"] for r in rs),
            "wall_s_min": min(r["wall_s"] for r in rs),
            "wall_s_max": max(r["wall_s"] for r in rs),
            "rss_sum_kib_median": statistics.median(r["rss_sum_kib"] for r in rs),
            "rss_max_kib_median": statistics.median(r["rss_max_kib"] for r in rs),
            "size_bytes": int(statistics.median(r["size_bytes"] for r in rs)),
        }

    image_tools = [t for t in ("lifeboat", "partclone", "dd", "fsarchiver") if ("image", t) in runs]
    restore_tools = [t for t in ("seqwrite", "lifeboat", "partclone", "dd", "fsarchiver")
                     if ("restore", t) in runs]
    image = {t: summary("image", t) for t in image_tools}
    restore = {t: summary("restore", t) for t in restore_tools}
    for s in restore.values():
        s["disk_mb_per_s"] = a.disk_bytes / MB / s["wall_s_median"]

    lb = image.get("lifeboat")
    ratios = {}
    if lb:
        for t, s in image.items():
            if t == "lifeboat":
                continue
            ratios[t] = {
                "time_ratio": s["wall_s_median"] / lb["wall_s_median"],
                "size_ratio": lb["size_bytes"] / s["size_bytes"] if s["size_bytes"] else None,
                "rss_ratio": lb["rss_sum_kib_median"] / s["rss_sum_kib_median"],
            }

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"kernel": platform.release(), "cpus": a.threads},
        "disk": {"path": a.disk, "bytes": a.disk_bytes, "partitions": a.parts.split()},
        "level": a.level,
        "runs": a.runs,
        "page_cache_dropped_before_each_run": True,
        "rss_note": "rss_sum_kib: the sum of the peak RSS of the processes of one pipeline "
                    "(max over the pipelines of a run, which run one after another); "
                    "rss_max_kib: the largest single process",
        "versions": {
            "lifeboat": tool_version([a.lifeboat, "--version"]) if lb else None,
            "partclone": tool_version(["partclone.dd", "-v"]),
            "zstd": tool_version(["zstd", "--version"]),
            "fsarchiver": tool_version(["fsarchiver", "-V"]),
        },
        "lifeboat_measured": lb is not None,
        "image": image,
        "restore": restore,
        "ratios_vs_lifeboat": ratios,
        "failed": a.failed.split(),
        "fsarchiver_partitions": a.fsarchiver_parts.split(),
        "notes": [n for n in a.note if n],
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    # --- Markdown ---------------------------------------------------------------------------
    mib = a.disk_bytes / 2**20
    print()
    print(f"## Imaging: {a.disk} ({mib:.0f} MiB; {a.parts.strip()}), zstd level {a.level}, "
          f"{a.threads} CPUs, median of {a.runs} runs")
    print()
    print("Page cache dropped before every run. Peak RSS of a pipeline = sum of its processes.")
    print()
    head = "| tool | time (s) | image size (MiB) | % of disk | peak RSS (MiB) |"
    sep = "|---|---:|---:|---:|---:|"
    if lb:
        head += " time ratio (peer/lifeboat) | size ratio (lifeboat/peer) |"
        sep += "---:|---:|"
    print(head)
    print(sep)
    for t, s in image.items():
        name = t
        if t == "fsarchiver" and result["fsarchiver_partitions"]:
            name = f"fsarchiver ({', '.join(result['fsarchiver_partitions'])} only)" \
                if len(result["fsarchiver_partitions"]) < len(result["disk"]["partitions"]) else t
        row = (f"| {name} | {s['wall_s_median']:.2f} | {s['size_bytes'] / 2**20:.1f} | "
               f"{100 * s['size_bytes'] / a.disk_bytes:.1f} | {s['rss_sum_kib_median'] / 1024:.1f} |")
        if lb:
            if t == "lifeboat":
                row += " 1.00 | 1.00 |"
            else:
                r = ratios[t]
                size_ratio = f"{r['size_ratio']:.2f}" if r["size_ratio"] is not None else "n/a"
                row += f" {r['time_ratio']:.2f} | {size_ratio} |"
        print(row)
    if not lb:
        print()
        print("lifeboat was not measured (its `image` command is not available), so there are "
              "no ratios.")

    if restore:
        print()
        print(f"## Restore onto a loop device over a preallocated file ({mib:.0f} MiB)")
        print()
        print("MB/s = disk size / time (1 MB = 10^6 bytes); tools that skip free space can exceed "
              "the sequential write speed.")
        print()
        seq = restore.get("seqwrite")
        print("| tool | time (s) | MB/s | vs seq write | peak RSS (MiB) |")
        print("|---|---:|---:|---:|---:|")
        for t, s in restore.items():
            vs = f"{s['disk_mb_per_s'] / seq['disk_mb_per_s']:.2f}" if seq else "n/a"
            name = "seq write (dd if=/dev/zero oflag=direct)" if t == "seqwrite" else t
            print(f"| {name} | {s['wall_s_median']:.2f} | {s['disk_mb_per_s']:.0f} | {vs} | "
                  f"{s['rss_sum_kib_median'] / 1024:.1f} |")
    for n in result["notes"]:
        print()
        print(f"Note: {n}")
    if result["failed"]:
        print()
        print("Failed runs (excluded): " + ", ".join(result["failed"]))
    print()
    print(f"Raw numbers: {a.out}")


if __name__ == "__main__":
    main()
