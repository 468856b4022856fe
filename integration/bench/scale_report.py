#!/usr/bin/env python3
"""Writes the scale part of docs/benchmarks.md and docs/scale.svg from integration/bench/
scale.sh's results: per data set and source, peak RSS, CPU and wall against active series.

Everything between `<!-- scale:begin -->` and `<!-- scale:end -->` is replaced; a file without
the markers gets them appended.
"""

import json
import math
import os

from report import repo_command, speeds_sentence, string_flags, with_exporter, write_section

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
MIB = 2**20


def mb(b):
    return f"{b / 1e6:.0f} MB"


def load(d, sets):
    out = []
    for name in sets:
        p = os.path.join(d, name, "set.json")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            meta = json.load(f)
        meta["name"] = name
        data = os.path.join(d, f"{name}.data")
        if os.path.exists(data):
            with open(data) as f:
                secs, kib = f.read().split()
            meta["build_seconds"], meta["disk_bytes"] = int(secs), int(kib) * 1024
        meta["spans"], meta["commands"] = {}, {}
        for span in ("1h", "24h"):
            cmd = repo_command(os.path.join(d, name, f"{span}.cmd"))
            if cmd:
                meta["commands"][span] = cmd
            p = os.path.join(d, name, span, "bench.json")
            if os.path.exists(p):
                with open(p) as f:
                    meta["spans"][span] = with_exporter(json.load(f))
        out.append(meta)
    return out


def ratio(r, key):
    g, h = r["sources"].get("grpc"), r["sources"].get("http")
    return h[key] / g[key] if g and h and g[key] else None


def fx(x):
    return "n/a" if x is None else f"{x:.1f}x"


def section(a, sets):
    out = [BEGIN, "", "### Measured", ""]
    out.append(f"Measured by `integration/bench/bench.sh scale` at `{a.rev}` (release build); "
               "one stack per data set, each source run as a child process, "
               f"{'one round' if all(s['spans'].get('1h', {}).get('rounds', 1) == 1 for s in sets) else 'median of the rounds'}. "
               "Stack CPU is user + system time of every process of the stack (Prometheus, "
               "sidecars, Thanos Query) from /proc during the run; the Querier's own figures come "
               "from its `/metrics`. The exporter's CPU per point is its CPU time over the "
               "points written (the same files for both sources).")
    speeds = speeds_sentence(a.bench_dir, [s["name"] for s in sets])
    if speeds:
        out[-1] += " " + speeds
    out += ["", "Commands, per set over its own stack (`source target/stack-bench-SET/env`):", "",
            "```sh"]
    out += [c for s in sets for c in s["commands"].values()]
    out += ["```", "", "![peak RSS and CPU against active series](scale.svg)", ""]
    out += ["### Data sets", "",
            "| set | active series | stored (HA replicas apart) | clusters | stack processes | span | scrape interval | build (generate + backfill) | on disk |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sets:
        # a set read from the cache "builds" in a second or two
        build = (f"{s['build_seconds']} s" if s.get("build_seconds", 0) > 5
                 else "built earlier (cached)")
        disk = f"{s['disk_bytes'] / 1e9:.2f} GB" if s.get("disk_bytes") else ""
        out.append(f"| {s['name']} | {int(float(s['active'])):,} | {int(float(s['stored'])):,} | "
                   f"{s['clusters']} | {s['processes']} | {s['hours']} h | {s['interval']} s | "
                   f"{build} | {disk} |")
    out += ["", "### Per set and source", "",
            "| set | span | source | exporter peak RSS | exporter CPU | ns/point | wall | Querier CPU | Querier peak RSS | stack CPU | bytes received | files | outputs agree |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in sets:
        for span, r in s["spans"].items():
            for src in ("grpc", "http"):
                x = r["sources"].get(src)
                if not x:
                    continue
                out.append(
                    f"| {s['name']} | {span} | {src} | {mb(x['exporter_peak_rss_bytes'])} | "
                    f"{x['exporter_cpu_seconds']:.1f} s | {x['exporter_ns_per_point']:.0f} | "
                    f"{x['wall_seconds']:.1f} s | {x['querier_cpu_seconds']:.1f} s | "
                    f"{mb(x['querier_peak_rss_bytes'])} | {x['stack_cpu_seconds']:.1f} s | "
                    f"{mb(x['bytes_received'])} | {x['files']:,} | "
                    f"{'yes' if r['outputs_agree'] else 'NO'} |")
    out += ["", "HTTP over gRPC, per set and span (higher favours gRPC):", "",
            "| set | span | stack CPU | stack + exporter CPU | wall | Querier CPU | "
            "exporter peak RSS |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for s in sets:
        for span, r in s["spans"].items():
            out.append(f"| {s['name']} | {span} | {fx(ratio(r, 'stack_cpu_seconds'))} | "
                       f"**{fx(ratio(r, 'total_cpu_seconds'))}** | "
                       f"{fx(ratio(r, 'wall_seconds'))} | {fx(ratio(r, 'querier_cpu_seconds'))} | "
                       f"{fx(ratio(r, 'exporter_peak_rss_bytes'))} |")
    out += ["", "Stack CPU per kind of process (gRPC / HTTP):", "",
            "| set | span | " + " | ".join(kinds(sets)) + " |",
            "|---|---|" + "---:|" * len(kinds(sets))]
    for s in sets:
        for span, r in s["spans"].items():
            g = r["sources"].get("grpc", {}).get("stack_cpu_by_kind", {})
            h = r["sources"].get("http", {}).get("stack_cpu_by_kind", {})
            out.append(f"| {s['name']} | {span} | " + " | ".join(
                f"{g.get(k, 0):.1f} / {h.get(k, 0):.1f} s" for k in kinds(sets)) + " |")

    out += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    by = {s["name"]: s for s in sets}
    for name in [s["name"] for s in sets if s["name"] != "22k"]:
        r = by[name]["spans"].get("1h")
        if r and "grpc" in r["sources"]:
            rss = r["sources"]["grpc"]["exporter_peak_rss_bytes"]
            out.append(f"| gRPC 1 h export peak RSS <= 256 MiB ({name}) | {rss / MIB:.0f} MiB | "
                       f"{'yes' if rss <= 256 * MIB else 'no'} |")
    s110 = by.get("110k", {}).get("spans", {})
    if "1h" in s110 and "24h" in s110:
        a1 = s110["1h"]["sources"]["grpc"]["exporter_peak_rss_bytes"]
        a24 = s110["24h"]["sources"]["grpc"]["exporter_peak_rss_bytes"]
        out.append(f"| gRPC peak RSS 24 h within 10 % of 1 h (110k) | {a1 / MIB:.0f} MiB to "
                   f"{a24 / MIB:.0f} MiB ({(a24 / a1 - 1) * 100:+.0f} %) | "
                   f"{'yes' if abs(a24 / a1 - 1) <= 0.10 else 'no'} |")
    r = by.get("22k", {}).get("spans", {}).get("24h")
    if r:
        for label, key, want in (("whole-stack CPU", "stack_cpu_seconds", 4),
                                 ("wall", "wall_seconds", 2),
                                 ("Querier CPU", "querier_cpu_seconds", 3)):
            x = ratio(r, key)
            out.append(f"| 24 h backfill (22k), {label} HTTP/gRPC >= {want}x | {fx(x)} | "
                       f"{'yes' if x and x >= want else 'no'} |")
        g = r["sources"]["grpc"]
        out.append(f"| exporter CPU per output point <= 150 ns (22k, 24 h, gRPC) | "
                   f"{g['exporter_ns_per_point']:.0f} ns | "
                   f"{'yes' if g['exporter_ns_per_point'] <= 150 else 'no'} |")
    agree = all(r["outputs_agree"] for s in sets for r in s["spans"].values())
    out.append(f"| outputs byte-identical on every set | "
               f"{'every set and span' if agree else 'see the table'} | "
               f"{'yes' if agree else 'no'} |")
    out += ["", END]
    return "\n".join(out)


def kinds(sets):
    k = set()
    for s in sets:
        for r in s["spans"].values():
            for x in r["sources"].values():
                k.update(x.get("stack_cpu_by_kind", {}))
    return sorted(k)


def svg(sets):
    """Two panels against active series (log scale): exporter peak RSS, and CPU (exporter and
    whole stack) of the 1 h export, per source."""
    pts = []
    for s in sets:
        r = s["spans"].get("1h")
        if r:
            pts.append((float(s["active"]), r["sources"]))
    pts.sort(key=lambda p: p[0])
    W, H, L, T, PW, PH, GAP = 900, 400, 70, 50, 340, 260, 110
    colors = {"grpc": "#2b6cb0", "http": "#dd6b20"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{L}" y="22" font-size="15" font-weight="bold">storeapi-exporter: a 1 h '
           'export against active series (lower is better)</text>']
    if not pts:
        return "\n".join(out + ["</svg>", ""])
    xs = [p[0] for p in pts]
    lo, hi = math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.1

    def panel(x0, title, unit, lines):
        # four ticks of a round step: 1, 2, 2.5 or 5 times a power of ten
        raw = max((v for _, _, vals in lines for v in vals), default=1) * 1.1 / 4 or 0.25
        mag = 10 ** math.floor(math.log10(raw))
        ymax = 4 * next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        o = [f'<text x="{x0}" y="{T - 8}" font-weight="bold">{title}</text>',
             f'<line x1="{x0}" y1="{T + PH}" x2="{x0 + PW}" y2="{T + PH}" stroke="#444"/>',
             f'<line x1="{x0}" y1="{T}" x2="{x0}" y2="{T + PH}" stroke="#444"/>']
        for i in range(5):
            v = ymax * i / 4
            y = T + PH - PH * i / 4
            o.append(f'<text x="{x0 - 6}" y="{y + 4:.0f}" text-anchor="end">{v:g}</text>')
            o.append(f'<line x1="{x0}" y1="{y:.0f}" x2="{x0 + PW}" y2="{y:.0f}" stroke="#eee"/>')
        o.append(f'<text x="{x0 - 50}" y="{T + PH / 2}" transform="rotate(-90 {x0 - 50} '
                 f'{T + PH / 2})" text-anchor="middle">{unit}</text>')
        for x in xs:
            px = x0 + (math.log10(x) - lo) / (hi - lo) * PW
            o.append(f'<text x="{px:.0f}" y="{T + PH + 16}" text-anchor="middle">'
                     f'{x / 1000:,.0f}k</text>')
        o.append(f'<text x="{x0 + PW / 2}" y="{T + PH + 34}" text-anchor="middle">active '
                 'series (log scale)</text>')
        labels = []  # (x, y, text, color) of each point's value
        for label, (color, dash), vals in lines:
            coords = [(x0 + (math.log10(x) - lo) / (hi - lo) * PW, T + PH - v / ymax * PH)
                      for x, v in zip(xs, vals)]
            o.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                     f'stroke-dasharray="{dash}" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
            for (x, y), v in zip(coords, vals):
                o.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
                labels.append((x, y, f"{v:.0f}" if v >= 10 else f"{v:.1f}", color))
        # values at the same x are spread 11 px apart so that none hides another; at the
        # leftmost x they sit left of the points, where no line runs
        columns = sorted({lx for lx, _, _, _ in labels})
        for x in columns:
            dx, anchor = (-6, "end") if x == columns[0] and len(columns) > 1 else (6, "start")
            column = sorted((l for l in labels if l[0] == x), key=lambda l: l[1])
            y_prev = None
            for lx, ly, text, color in column:
                y = ly - 5 if y_prev is None else max(ly - 5, y_prev + 11)
                y_prev = y
                o.append(f'<text x="{lx + dx:.1f}" y="{y:.1f}" font-size="9" fill="{color}" '
                         f'text-anchor="{anchor}">{text}</text>')
        return o

    rss = [(f"{s} exporter", (colors[s], "none"),
            [p[1].get(s, {}).get("exporter_peak_rss_bytes", 0) / MIB for p in pts])
           for s in ("grpc", "http")]
    cpu = []
    for s in ("grpc", "http"):
        cpu.append((f"{s} exporter", (colors[s], "none"),
                    [p[1].get(s, {}).get("exporter_cpu_seconds", 0) for p in pts]))
        cpu.append((f"{s} whole stack", (colors[s], "5,4"),
                    [p[1].get(s, {}).get("stack_cpu_seconds", 0) for p in pts]))
    out += panel(L, "exporter peak RSS", "MiB", rss)
    out += panel(L + PW + GAP, "CPU seconds", "CPU s", cpu)
    legend = [("gRPC exporter", colors["grpc"], "none"), ("HTTP exporter", colors["http"], "none"),
              ("gRPC whole stack", colors["grpc"], "5,4"),
              ("HTTP whole stack", colors["http"], "5,4")]
    for i, (label, color, dash) in enumerate(legend):
        x = L + i * 170
        out.append(f'<line x1="{x}" y1="{H - 14}" x2="{x + 24}" y2="{H - 14}" stroke="{color}" '
                   f'stroke-width="2" stroke-dasharray="{dash}"/>'
                   f'<text x="{x + 30}" y="{H - 10}">{label}</text>')
    out += ["</svg>", ""]
    return "\n".join(out)


def main():
    a = string_flags(__doc__, ("bench-dir", "sets", "out", "svg", "rev"))
    sets = load(a.bench_dir, a.sets.split())
    write_section(a.out, section(a, sets), BEGIN, END)
    with open(a.svg, "w") as f:
        f.write(svg(sets))


if __name__ == "__main__":
    main()
