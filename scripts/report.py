"""Turn compare.sh's raw results into bench/REPORT.md and bench/throughput.svg."""
import json, os, platform, statistics, sys
from collections import defaultdict

raw, out, runs, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
allrows = [json.loads(l) for l in open(raw) if l.strip()]
rows = [r for r in allrows if "scenario" in r]
lat_runs = defaultdict(list)
for r in allrows:
    if "latency" in r and not r["latency"].get("failed"):
        lat_runs[r["broker"]].append(r["latency"])
# Median of each figure over the runs (the ratio too: the median of each run's own ratio, so
# every ratio compares a broker with the echo floor measured in the same run).
lat = {b: {k: statistics.median(x[k] for x in v) for k in v[0] if isinstance(v[0][k], (int, float))} for b, v in lat_runs.items()}
res = defaultdict(list)
for r in rows:
    res[(r["scenario"], r["broker"])].append(r["result"])
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
brokers = list(dict.fromkeys(r["broker"] for r in rows))
NULL, ROMP, ROMP1 = "null broker", "romp", "romp, 1 worker"
peers = [b for b in brokers if b not in (NULL, ROMP, ROMP1)]
SLOW, SOLO = "topic 1->1 + 1 slow subscriber", "topic 1->1 (solo)"


def summary(rs):
    ok = [r for r in rs if not r.get("failed")]
    if not ok:
        return None
    bad = sum(r["lost"] + r["duplicated"] + r["reordered"] + r["corrupt"] + r["errors"] for r in ok)
    lost = sum(r["lost"] for r in ok)
    # Expected deliveries: what arrived plus what was lost, minus duplicates.
    expected = sum(r["delivered"] + r["lost"] - r["duplicated"] for r in ok)
    # Of what was lost: messages of the unwindowed burst that opens every queue run.
    burst_lost = sum(r.get("burst_lost", 0) for r in ok)
    m = {"rate": statistics.median(r["delivery_rate"] for r in ok), "bad": bad, "lost": lost, "expected": expected,
         "burst_lost": burst_lost, "failed_runs": len(rs) - len(ok)}
    if any("latency_us" in r for r in ok):
        m["lat"] = {k: statistics.median(r["latency_us"][k] for r in ok if "latency_us" in r) for k in ("p50", "p99", "p999", "max")}
    if any("slow" in r for r in ok):
        m["cut_off"] = sum(r["slow"]["cut_off"] for r in ok if "slow" in r)
    rss = [r["broker_rss_kib"] for r in ok if "broker_rss_kib" in r]
    if rss:
        m["rss_kib"] = max(rss)
    return m


def get(s, b):
    return summary(res.get((s, b), []))


def fmt(x):
    return f"{x/1e6:.2f}M" if x >= 1e6 else f"{x/1e3:.0f}k"


def cell(m):
    if m is None:
        return "failed"
    note = ""
    if m["bad"]:
        pct = f", {100*m['lost']/max(m['expected'], 1):.2f}% lost" if m["lost"] else ""
        burst = f", {m['burst_lost']} of them in the burst" if m["burst_lost"] else ""
        note = f" ({m['bad']} bad{pct}{burst})"
    fails = f" ({m['failed_runs']} runs failed)" if m["failed_runs"] else ""
    return fmt(m["rate"]) + note + fails


cpu = ""
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except StopIteration:
    pass
L = ["# romp benchmark report", ""]
L += [f"Machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}; brokers and the load tool share the cores.",
      f"Load tool: romp-bench (this repo), 100-byte bodies and auto ack unless the scenario says otherwise, median of {runs} runs",
      f"of {secs} s after 1 s warm-up. Figures are deliveries per second (for queues, messages per second). Every run checks each",
      "message's producer id, sequence number and checksum; a figure marked `bad` had messages lost, duplicated, reordered or",
      "corrupted (over all runs; % lost of the deliveries expected). After each run the tool waits until every expected delivery",
      "arrived or nothing moved for 3 s. Every queue run opens with a burst (50,000 messages per producer, at most 64 MiB)",
      "pipelined with no window: a broker that sheds a busy queue's producer loses messages there, and the run is bad.", "",
      f"The **null broker** column is the tool's own ceiling on this machine: romp-bench's `--null-broker`, a one-thread forwarder",
      "with no STOMP semantics (no acks, no queues, no limits), measured by the same tool on the same cores.", ""]
L += ["Peers: " + "; ".join(l.strip() for l in open(f"{out}/peers.txt")), ""]

cols = [b for b in brokers if b != ROMP1]
head = "| scenario | " + " | ".join(cols) + " | romp / tool ceiling | " + " | ".join(f"romp / {b}" for b in peers) + " |"
L += [head, "|" + "---|" * (2 + len(cols) + len(peers))]
for s in scenarios:
    if s == SLOW:
        continue
    base, ceil = get(s, ROMP), get(s, NULL)
    cells = [cell(get(s, b)) if (s, b) in res else "-" for b in cols]
    pct = f"{100*base['rate']/ceil['rate']:.0f}%" if base and ceil and ceil["rate"] else "-"
    ratios = []
    for b in peers:
        m = get(s, b)
        ratios.append(f"{base['rate']/m['rate']:.1f}x" if base and m and m["rate"] > 0 else "-")
    L.append(f"| {s} | " + " | ".join(cells) + f" | {pct} | " + " | ".join(ratios) + " |")

if any(b == ROMP1 for b in brokers):
    L += ["", "Worker scaling (romp with one worker thread against its default of one per core):", "",
          "| scenario | 1 worker | default | gain |", "|---|---|---|---|"]
    for s in scenarios:
        one, many = get(s, ROMP1), get(s, ROMP)
        if one and many:
            L.append(f"| {s} | {cell(one)} | {cell(many)} | {many['rate']/max(one['rate'], 1):.2f}x |")

slow_rows = [(b, get(SOLO, b), get(SLOW, b)) for b in brokers if get(SLOW, b)]
if slow_rows:
    L += ["", "Slow consumer: one topic subscriber reading 200 msg/s beside a fast one. The fast one's rate against its solo",
          "rate, whether the broker cut the slow one off, and the broker's peak RSS during the run:", "",
          "| broker | fast alone | fast beside slow | kept | slow cut off (runs) | peak RSS |", "|---|---|---|---|---|---|"]
    for b, solo, slow in slow_rows:
        kept = f"{100*slow['rate']/solo['rate']:.0f}%" if solo and solo["rate"] else "-"
        rss = f"{slow['rss_kib']/1024:.1f} MiB" if slow.get("rss_kib") else "-"
        L.append(f"| {b} | {cell(solo)} | {cell(slow)} | {kept} | {slow.get('cut_off', 0)} of {runs} | {rss} |")

open_rows = [(s, b, get(s, b)) for s in scenarios for b in brokers if s.startswith("open loop") and get(s, b) and "lat" in get(s, b)]
if open_rows:
    L += ["", "Open loop: messages sent at a fixed rate; lateness is measured from each message's intended send time, so a",
          "broker that stalls cannot hide it by slowing the sender (median of runs):", "",
          "| scenario | broker | delivered/s | p50 us | p99 us | p99.9 us | max us |", "|---|---|---|---|---|---|---|"]
    for s, b, m in open_rows:
        l = m["lat"]
        L.append(f"| {s} | {b} | {cell(m)} | {l['p50']:.0f} | {l['p99']:.0f} | {l['p999']:.0f} | {l['max']:.0f} |")

if lat:
    L += ["", f"Request/reply, 1 requester, 1 in flight, 100 B (median of {runs} runs; the echo floor is a raw loopback TCP",
          "echo of the same size measured by the same tool in the same run, and each run's ratio uses its own floor):", "",
          "| broker | p50 us | p99 us | p99.9 us | echo p50 / p99 us | p99 vs echo |", "|---|---|---|---|---|---|"]
    for b in brokers:
        if b not in lat:
            continue
        l = lat[b]
        if l.get("failed"):
            L.append(f"| {b} | failed | | | | |")
            continue
        L.append(f"| {b} | {l['p50_us']:.0f} | {l['p99_us']:.0f} | {l['p999_us']:.0f} | {l['echo_p50_us']:.0f} / {l['echo_p99_us']:.0f} | {l['p99_vs_echo']:.1f}x |")

idle = next((r["idle"] for r in allrows if "idle" in r and not r["idle"].get("failed")), None)
if idle:
    L += ["", f"Idle sessions: {idle['sessions']} CONNECTed sessions with one subscription each: broker RSS {idle['rss_before_kib']} KiB ->",
          f"{idle['rss_after_kib']} KiB, **{idle['bytes_per_session']} bytes per session** (transparent huge pages off for the broker, so",
          "RSS counts 4 KiB pages; 100,000 sessions cannot be opened here: the hard open-files limit is 20,000 per process)."]

# Targets of issue 4, checked against this run's numbers.
def target(name, ok, detail):
    return f"| {name} | {'met' if ok else 'NOT met'} | {detail} |"

T = []
rab = "rabbitmq" if "rabbitmq" in brokers else None
for s, floor in (("queue 1->1", 1e6), ("topic 1->10", 2e6)):
    m, r = get(s, ROMP), get(s, rab) if rab else None
    if m:
        ratio = m["rate"] / r["rate"] if r and r["rate"] else 0
        ok = m["rate"] >= floor and ratio >= 10
        T.append(target(f"{s} >= {fmt(floor)} and >= 10x RabbitMQ", ok, f"{fmt(m['rate'])}, {ratio:.0f}x RabbitMQ" if r else fmt(m["rate"])))
if ROMP in lat and not lat[ROMP].get("failed"):
    v = lat[ROMP]["p99_vs_echo"]
    T.append(target("request/reply p99 <= 2.5x TCP echo p99", v <= 2.5, f"{v:.1f}x"))
solo, slow = get(SOLO, ROMP), get(SLOW, ROMP)
if solo and slow:
    kept = slow["rate"] / solo["rate"]
    T.append(target("fast subscriber keeps >= 90% beside a slow one", kept >= 0.9, f"{100*kept:.0f}%, peak RSS {slow.get('rss_kib', 0)/1024:.1f} MiB"))
if idle:
    per = float(idle["bytes_per_session"])
    n = idle["sessions"]
    verdict = ("met" if per <= 2048 else "NOT met") + (f" at {n:,} sessions; 100k not measurable here" if n < 100_000 else "")
    T.append(f"| idle session <= 2 KiB RSS (100k sessions) | {verdict} | {per:.0f} B per session at {n:,} (the hard open-files limit is 20,000 per process) |")
bad = sum((get(s, ROMP) or {"bad": 1})["bad"] for s in scenarios if (s, ROMP) in res)
T.append(target("zero lost, duplicated or reordered (romp, every scenario)", bad == 0, f"{bad} bad deliveries"))
burst_lost = sum((get(s, ROMP) or {"burst_lost": 0})["burst_lost"] for s in scenarios if (s, ROMP) in res)
T.append(target("zero lost in the unwindowed burst (romp, every queue scenario)", burst_lost == 0, f"{burst_lost} lost in bursts"))
L += ["", "Targets (issue 4), from this run:", "", "| target | verdict | measured |", "|---|---|---|"] + T

L += ["", "![throughput](throughput.svg)", "",
      "Reproduce: `scripts/compare.sh " + f"{runs} {secs}" + "` (installs and starts the peers itself). Raw results: `bench/raw.jsonl`."]
open(f"{out}/REPORT.md", "w").write("\n".join(L) + "\n")

# Grouped bar chart: each scenario's bars scaled to its own maximum.
chart = [s for s in scenarios if s != SLOW]
W, P = 860, 260
H = 60 + sum(8 + 22 * sum(1 for b in brokers if (s, b) in res) for s in chart)
colors = ["#7f7f7f", "#1f77b4", "#aec7e8", "#ff7f0e", "#9467bd", "#2ca02c", "#d62728"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>', '<text x="10" y="20">deliveries per second (median), per scenario</text>']
for i, b in enumerate(brokers):
    svg.append(f'<rect x="{10 + i*140}" y="30" width="12" height="12" fill="{colors[i % len(colors)]}"/><text x="{26 + i*140}" y="41">{b}</text>')
y = 60
for s in chart:
    present = [(i, b) for i, b in enumerate(brokers) if (s, b) in res]
    svg.append(f'<text x="10" y="{y + 13}">{s}</text>')
    vals = [(get(s, b) or {"rate": 0})["rate"] for _, b in present]
    mx = max(vals) or 1
    for k, ((i, b), v) in enumerate(zip(present, vals)):
        w = (W - P - 80) * v / mx
        svg.append(f'<rect x="{P}" y="{y + k*22}" width="{w:.1f}" height="18" fill="{colors[i % len(colors)]}"/>')
        svg.append(f'<text x="{P + w + 5:.1f}" y="{y + k*22 + 13}">{fmt(v)}</text>')
    y += 8 + 22 * len(present)
svg.append("</svg>")
open(f"{out}/throughput.svg", "w").write("\n".join(svg))
print(open(f"{out}/REPORT.md").read())
