"""Judge and plot a soak run: scripts/soak_report.py OUT_DIR (reads samples.csv, bench.jsonl).

RSS under an active load swings with the load's own buffers (bench runs restart every 20 s), so
"flat" is judged on the trend: after a 20% warm-up, the run is cut into four quarters and each
quarter's mean RSS must be within 10% of the first quarter's. Descriptors must not grow, and
every bench run must be clean. The instantaneous range is reported too.
"""
import csv, json, statistics, sys

out = sys.argv[1]
rows = [(int(r["seconds"]), int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(f"{out}/samples.csv"))]
total = rows[-1][0] or 1
load = rows[:-1] or rows  # the last sample is taken after the load stopped
warm_at = total * 0.2
after = [r for r in load if r[0] >= warm_at] or load
q = (load[-1][0] - warm_at) / 4 or 1
means = []
for k in range(4):
    seg = [r[1] for r in after if warm_at + k * q <= r[0] < warm_at + (k + 1) * q] or [after[-1][1]]
    means.append(statistics.mean(seg))
drift = max(m / means[0] for m in means)
lo, hi = min(r[1] for r in after), max(r[1] for r in after)
fd_load = max(r[2] for r in load if r[0] >= warm_at) if after else load[-1][2]
fd_start = max(r[2] for r in load if r[0] < warm_at)
fd_end = rows[-1][2]
runs = [json.loads(l) for l in open(f"{out}/bench.jsonl") if l.strip()]
bad = sum(r["lost"] + r["duplicated"] + r["reordered"] + r["corrupt"] for r in runs)
delivered = sum(r["delivered"] for r in runs)
ok = drift <= 1.10 and fd_load <= fd_start and fd_end <= fd_start and bad == 0 and runs
summary = (
    f"duration {total} s, {len(rows)} samples; RSS quarter means after warm-up "
    f"{', '.join(f'{m/1024:.1f}' for m in means)} MiB (largest {100*(drift-1):+.1f}% vs the first); "
    f"instantaneous {lo/1024:.1f}..{hi/1024:.1f} MiB; fds during load <= {fd_load} (warm-up {fd_start}), "
    f"after it {fd_end}; {len(runs)} bench runs, {delivered} deliveries, {bad} lost/duplicated/reordered/corrupt; "
    f"{'PASS' if ok else 'FAIL'}"
)
open(f"{out}/summary.txt", "w").write(summary + "\n")
print(summary)

W, H, P = 720, 300, 50
mx = max(r[1] for r in rows) / 1024 * 1.15 or 1
mf = max(r[2] for r in rows) * 1.15 or 1
x = lambda t: P + (W - 2 * P) * t / total
y = lambda v, m: H - P - (H - 2 * P) * v / m
rss_pts = " ".join(f"{x(r[0]):.1f},{y(r[1]/1024, mx):.1f}" for r in rows)
fd_pts = " ".join(f"{x(r[0]):.1f},{y(r[2], mf):.1f}" for r in rows)
svg = f'''<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{P}" y="20">romp soak: broker RSS (MiB, blue, left axis) and open fds (orange, right axis) over {total} s</text>
<line x1="{P}" y1="{H-P}" x2="{W-P}" y2="{H-P}" stroke="black"/><line x1="{P}" y1="{P}" x2="{P}" y2="{H-P}" stroke="black"/>
<line x1="{W-P}" y1="{P}" x2="{W-P}" y2="{H-P}" stroke="black"/>
<text x="{P-5}" y="{P+4}" text-anchor="end">{mx:.0f}</text><text x="{P-5}" y="{H-P}" text-anchor="end">0</text>
<text x="{W-P+5}" y="{P+4}">{mf:.0f}</text><text x="{W-P+5}" y="{H-P}">0</text>
<text x="{W-P}" y="{H-P+15}" text-anchor="end">{total} s</text><text x="{x(warm_at):.0f}" y="{H-P+15}">warm-up ends</text>
<line x1="{x(warm_at):.1f}" y1="{P}" x2="{x(warm_at):.1f}" y2="{H-P}" stroke="#999" stroke-dasharray="4"/>
<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{rss_pts}"/>
<polyline fill="none" stroke="#ff7f0e" stroke-width="1.5" points="{fd_pts}"/>
</svg>'''
open(f"{out}/soak.svg", "w").write(svg)
sys.exit(0 if ok else 1)
