"""Turn compare.sh's raw results into bench/REPORT.md and bench/throughput.svg."""
import json, os, platform, statistics, subprocess, sys
from collections import defaultdict

raw, out, runs, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
allrows = [json.loads(l) for l in open(raw) if l.strip()]
rows = [r for r in allrows if "scenario" in r]
lat = {r["broker"]: r["latency"] for r in allrows if "latency" in r}
res = defaultdict(list)
for r in rows:
    res[(r["scenario"], r["broker"])].append(r["result"])
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
brokers = list(dict.fromkeys(r["broker"] for r in rows))

def summary(rs):
    ok = [r for r in rs if not r.get("failed")]
    if not ok:
        return None
    rate = statistics.median(r["delivery_rate"] for r in ok)
    bad = sum(r["lost"] + r["duplicated"] + r["reordered"] + r["corrupt"] + r["errors"] for r in ok)
    lost = sum(r["lost"] for r in ok)
    # Expected deliveries: what arrived plus what was lost, minus duplicates.
    expected = sum(r["delivered"] + r["lost"] - r["duplicated"] for r in ok)
    return {"rate": rate, "bad": bad, "lost": lost, "expected": expected, "failed_runs": len(rs) - len(ok)}

def fmt(x):
    return f"{x/1e6:.2f}M" if x >= 1e6 else f"{x/1e3:.0f}k"

cpu = ""
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except StopIteration:
    pass
lines = ["# romp benchmark report", ""]
lines += [f"Machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}; broker and load tool share the cores.",
          f"Load tool: romp-bench (this repo), 100-byte bodies, auto ack, median of {runs} runs of {secs} s after 1 s warm-up.",
          "Figures are deliveries per second (for queues, messages per second). Every run checks each",
          "message's producer id, sequence number and checksum; a figure marked `bad` had messages lost,",
          "duplicated, reordered or corrupted (over all runs; % lost of the deliveries expected). After each",
          "run the tool waits until every expected delivery arrived or nothing moved for 3 s.", ""]
lines += ["Peers: " + "; ".join(l.strip() for l in open(f"{out}/peers.txt")), ""]
head = "| scenario | " + " | ".join(brokers) + " | " + " | ".join(f"romp / {b}" for b in brokers if b != "romp") + " |"
lines += [head, "|" + "---|" * (1 + len(brokers) + len(brokers) - 1)]
for s in scenarios:
    cells, base = [], summary(res[(s, "romp")])
    for b in brokers:
        m = summary(res[(s, b)])
        if m is None:
            cells.append("failed")
        else:
            note = "" if m["bad"] == 0 else f" ({m['bad']} bad{', ' + format(100*m['lost']/max(m['expected'],1), '.2f') + '% lost' if m['lost'] else ''})"
            fails = f" ({m['failed_runs']} runs failed)" if m["failed_runs"] else ""
            cells.append(fmt(m["rate"]) + note + fails)
    ratios = []
    for b in brokers:
        if b == "romp":
            continue
        m = summary(res[(s, b)])
        ratios.append(f"{base['rate']/m['rate']:.1f}x" if base and m and m["rate"] > 0 else "n/a")
    lines.append(f"| {s} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
if lat:
    lines += ["", "Request/reply, 1 requester, 1 in flight, 100 B (one run each; the echo floor is a raw loopback TCP",
              "echo of the same size measured by the same tool in the same run):", "",
              "| broker | p50 us | p99 us | p99.9 us | echo p50 / p99 us | p99 vs echo |", "|---|---|---|---|---|---|"]
    for b in brokers:
        l = lat.get(b)
        if not l or l.get("failed"):
            lines.append(f"| {b} | failed | | | | |")
            continue
        lines.append(f"| {b} | {l['p50_us']:.0f} | {l['p99_us']:.0f} | {l['p999_us']:.0f} | {l['echo_p50_us']:.0f} / {l['echo_p99_us']:.0f} | {l['p99_vs_echo']:.1f}x |")
lines += ["", "![throughput](throughput.svg)", "", "Reproduce: `scripts/compare.sh " + f"{runs} {secs}" + "` (installs and starts the peers itself). Raw results: `bench/raw.jsonl`."]
open(f"{out}/REPORT.md", "w").write("\n".join(lines) + "\n")

# Grouped bar chart, log-free: each scenario's bars scaled to its own maximum.
W, H, P = 760, 60 + 90 * len(scenarios), 170
colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>', '<text x="10" y="20">deliveries per second (median), per scenario</text>']
for i, b in enumerate(brokers):
    svg.append(f'<rect x="{10 + i*170}" y="30" width="12" height="12" fill="{colors[i % 4]}"/><text x="{26 + i*170}" y="41">{b}</text>')
for j, s in enumerate(scenarios):
    y0 = 60 + j * 90
    svg.append(f'<text x="10" y="{y0 + 30}">{s}</text>')
    vals = [(summary(res[(s, b)]) or {"rate": 0})["rate"] for b in brokers]
    mx = max(vals) or 1
    for i, (b, v) in enumerate(zip(brokers, vals)):
        w = (W - P - 80) * v / mx
        svg.append(f'<rect x="{P}" y="{y0 + i*22}" width="{w:.1f}" height="18" fill="{colors[i % 4]}"/>')
        svg.append(f'<text x="{P + w + 5:.1f}" y="{y0 + i*22 + 13}">{fmt(v)}</text>')
svg.append("</svg>")
open(f"{out}/throughput.svg", "w").write("\n".join(svg))
print(open(f"{out}/REPORT.md").read())
