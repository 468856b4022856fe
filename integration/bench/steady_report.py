#!/usr/bin/env python3
"""Writes the steady-state part of docs/benchmarks.md from integration/bench/steady.sh's
results: per data set and BATCH_DELAY, a simulated day of CronJob runs against the HTTP path's.

Everything between `<!-- steady:begin -->` and `<!-- steady:end -->` is replaced; a file
without the markers gets them appended.
"""

import datetime
import json
import os

from report import repo_command, speeds_sentence, string_flags, write_section

BEGIN, END = "<!-- steady:begin -->", "<!-- steady:end -->"
MIB = 2**20


def load(d, sets, delays):
    rows = []
    for name in sets:
        for delay in delays:
            p = os.path.join(d, name, delay, "steady.json")
            if not os.path.exists(p):
                continue
            with open(p) as f:
                r = json.load(f)
            r["command"] = repo_command(os.path.join(d, name, delay, "command"))
            rows.append((name, delay, r))
    return rows


def day(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def section(a, rows):
    out = [BEGIN, "", "### Measured", ""]
    if not rows:
        return "\n".join(out + ["No results.", "", END])
    r0 = rows[0][2]
    out.append(
        f"Measured by `integration/bench/bench.sh steady` at `{a.rev}` (release build, the "
        "binary the image carries), one simulated day per row, each set's stack idle first. "
        f"The day is {day(r0['from'])} to {day(r0['to'])}; the StoreAPI's state starts "
        "`BATCH_DELAY` behind it (rounded up to whole windows) with the request packing a run "
        "before the day learned, the HTTP path's with it, and "
        "\"files byte-identical\" counts the windows both wrote. Whole-stack CPU is user + "
        "system time of Prometheus, the sidecars and Thanos Query while a run is alive. "
        "Command per row, over the set's stack (`source target/stack-bench-SET/env`):")
    out += ["", "```sh"]
    out += sorted({r["command"] for _, _, r in rows if r["command"]})
    out += ["```", ""]
    speeds = speeds_sentence(a.bench_dir, list(dict.fromkeys(n for n, _, _ in rows)))
    if speeds:
        out += [speeds, ""]
    kinds = sorted({k for _, _, r in rows for src in ("grpc", "http")
                    for k in r[src]["stack_cpu_by_kind"]})
    out += ["| set | BATCH_DELAY | whole stack CPU per window gRPC / HTTP | ratio | stack + "
            "exporter CPU per window gRPC / HTTP | ratio | the day's "
            "stack CPU gRPC / HTTP | " + " | ".join(kinds) + " | calls gRPC / HTTP | windows "
            "gRPC / HTTP | exporter peak RSS | delay max / mean (gRPC) | files byte-identical |",
            "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(kinds) + "---:|---:|---:|---:|---:|"]
    for name, delay, r in rows:
        g, h = r["grpc"], r["http"]
        ag = r["agreement"]
        out.append(
            f"| {name} | {delay} | {g['stack_cpu_seconds_per_window']:.2f} / "
            f"{h['stack_cpu_seconds_per_window']:.2f} s | **{r['stack_ratio']:.2f}x** | "
            f"{g['total_cpu_seconds_per_window']:.2f} / "
            f"{h['total_cpu_seconds_per_window']:.2f} s | **{r['total_ratio']:.2f}x** | "
            f"{g['stack_cpu_seconds']:.1f} / {h['stack_cpu_seconds']:.1f} s | "
            + " | ".join(f"{g['stack_cpu_by_kind'].get(k, 0):.1f} / "
                         f"{h['stack_cpu_by_kind'].get(k, 0):.1f} s" for k in kinds)
            + f" | {g['calls']} / {h['calls']} | {g['windows']} / {h['windows']} | "
            f"{g['exporter_peak_rss_bytes'] / MIB:.0f} MiB | "
            f"{g['max_delay_seconds'] / 60:.0f} / {g['mean_delay_seconds'] / 60:.0f} min | "
            f"{ag['identical_files']} of {ag['files']} |")
    out += ["", END]
    return "\n".join(out)


def main():
    a = string_flags(__doc__, ("bench-dir", "sets", "delays", "out", "rev"))
    rows = load(a.bench_dir, a.sets.split(), a.delays.split())
    write_section(a.out, section(a, rows), BEGIN, END)


if __name__ == "__main__":
    main()
