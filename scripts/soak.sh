#!/usr/bin/env bash
# Soak: a steady mixed load against a release broker for a while, sampling its RSS and open
# descriptors every few seconds. Usage: scripts/soak.sh [SECONDS=300] [OUT_DIR=soak-out]
# Load (all romp-bench, restarted every 20 s so connections churn the whole time):
#   queues 4->4 with client-individual acks, topic 1->5 fan-out, 8 partitioned queues 8->8,
#   plus a loop of quick connect/subscribe/disconnect runs.
# Writes OUT_DIR/samples.csv (seconds,rss_kib,fds), OUT_DIR/soak.svg, OUT_DIR/summary.txt, and
# exits non-zero if RSS after warm-up (the first 20%) varies by more than 10% or descriptors
# grow, or if any bench run reported a lost, duplicated or reordered message.
set -euo pipefail
secs=${1:-300}
out=${2:-soak-out}
cd "$(dirname "$0")/.."
cargo build --release -q --bin romp --bin romp-bench
mkdir -p "$out"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
./target/release/romp --port "$port" --web-port 0 --workers 2 >"$out/broker.log" 2>&1 &
broker=$!
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; kill -TERM "$broker" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
sleep 0.5
end=$((SECONDS + secs))
bench() { ./target/release/romp-bench --port "$port" --threads 1 --warmup 0 --json "$@"; }
load() { # one scenario, restarted until the end; every run must be clean
  while [ $SECONDS -lt $end ]; do
    bench --duration 20 "$@" >>"$out/bench.jsonl" 2>>"$out/bench.err" || echo "FAILED: $*" >>"$out/failures.txt"
  done
}
load --kind queue --producers 4 --consumers 4 --destinations 4 --ack client-individual --window 4000 --queue-prefix /queue/soak-ack- & pids+=($!)
load --kind topic --producers 1 --consumers 5 --window 2000 --topic-prefix /topic/soak-fan- & pids+=($!)
load --kind queue --producers 8 --consumers 8 --destinations 8 --window 2000 --size 512 --queue-prefix /queue/soak-part- & pids+=($!)
(while [ $SECONDS -lt $end ]; do bench --duration 0.2 --producers 2 --consumers 2 --window 100 --queue-prefix "/queue/soak-churn-$RANDOM-" >/dev/null 2>&1 || true; done) & pids+=($!)
echo "seconds,rss_kib,fds" >"$out/samples.csv"
start=$SECONDS
while [ $SECONDS -lt $end ]; do
  rss=$(awk '/^VmRSS:/ {print $2}' /proc/$broker/status)
  fds=$(ls /proc/$broker/fd | wc -l)
  echo "$((SECONDS - start)),$rss,$fds" >>"$out/samples.csv"
  sleep 5
done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
sleep 2
rss=$(awk '/^VmRSS:/ {print $2}' /proc/$broker/status); fds=$(ls /proc/$broker/fd | wc -l)
echo "$((SECONDS - start)),$rss,$fds" >>"$out/samples.csv"
python3 - "$out" <<'PY'
import csv, json, sys
out = sys.argv[1]
rows = [(int(r["seconds"]), int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(f"{out}/samples.csv"))]
total = rows[-1][0] or 1
warm = [r for r in rows[:-1] if r[0] >= total * 0.2] or rows
lo, hi = min(r[1] for r in warm), max(r[1] for r in warm)
fd_early = max(r[2] for r in rows[:3]); fd_end = rows[-1][2]
runs = [json.loads(l) for l in open(f"{out}/bench.jsonl") if l.strip()]
bad = sum(r["lost"] + r["duplicated"] + r["reordered"] + r["corrupt"] for r in runs)
delivered = sum(r["delivered"] for r in runs)
ok = hi <= lo * 1.10 and fd_end <= fd_early and bad == 0
summary = (f"duration {total} s, {len(rows)} samples; RSS after warm-up {lo}..{hi} KiB "
           f"(spread {100*(hi-lo)/lo:.1f}%); fds at start {fd_early}, at end {fd_end}; "
           f"{len(runs)} bench runs, {delivered} deliveries, {bad} lost/duplicated/reordered/corrupt; "
           f"{'PASS' if ok else 'FAIL'}")
open(f"{out}/summary.txt", "w").write(summary + "\n")
print(summary)
# A small SVG plot: RSS (MiB) and fds over time.
W, H, P = 720, 300, 50
mx = max(r[1] for r in rows) / 1024 * 1.15 or 1
mf = max(r[2] for r in rows) * 1.15 or 1
x = lambda t: P + (W - 2 * P) * t / total
y = lambda v, m: H - P + -(H - 2 * P) * v / m
rss_pts = " ".join(f"{x(r[0]):.1f},{y(r[1]/1024, mx):.1f}" for r in rows)
fd_pts = " ".join(f"{x(r[0]):.1f},{y(r[2], mf):.1f}" for r in rows)
svg = f'''<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{P}" y="20">romp soak: broker RSS (MiB, blue, left) and open fds (orange, right) over {total} s</text>
<line x1="{P}" y1="{H-P}" x2="{W-P}" y2="{H-P}" stroke="black"/><line x1="{P}" y1="{P}" x2="{P}" y2="{H-P}" stroke="black"/>
<text x="{P-5}" y="{P}" text-anchor="end">{mx:.0f}</text><text x="{P-5}" y="{H-P}" text-anchor="end">0</text>
<text x="{W-P+5}" y="{P}">{mf:.0f}</text><text x="{W-P}" y="{H-P+15}" text-anchor="end">{total} s</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{rss_pts}"/>
<polyline fill="none" stroke="#ff7f0e" stroke-width="2" points="{fd_pts}"/>
</svg>'''
open(f"{out}/soak.svg", "w").write(svg)
sys.exit(0 if ok else 1)
PY
status=$?
if [ -s "$out/failures.txt" ]; then echo "bench runs failed:"; cat "$out/failures.txt"; status=1; fi
exit $status
