#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# SECONDS per target (default 60). Targets run one after another unless FUZZ_PARALLEL=1, which
# starts them all at once at nice 19. Needs cargo-fuzz (cargo install cargo-fuzz); runs on stable
# Rust through RUSTC_BOOTSTRAP=1. Corpora grow in fuzz/corpus/<target> (seeded from fuzz/seeds);
# crashes land in fuzz/artifacts/<target>; a summary line per target goes to fuzz/logs/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(parser parser_split escape_roundtrip ws_decoder http_head session workers selector)
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz"; exit 1; }
export RUSTC_BOOTSTRAP=1
cargo fuzz build >/dev/null
mkdir -p logs
run() {
  local t=$1
  mkdir -p "corpus/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  if nice -n "${FUZZ_NICE:-0}" cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"logs/$t.log" 2>&1; then
    status=ok
  else
    status="FAILED (see fuzz/logs/$t.log and fuzz/artifacts/$t)"
  fi
  local runs
  runs=$(grep -E '^stat::number_of_executed_units' "logs/$t.log" | awk '{print $2}')
  echo "$(date -u +%FT%TZ) $t: ${secs}s, ${runs:-?} executions, corpus $(ls "corpus/$t" | wc -l) inputs: $status" | tee -a logs/summary.txt
  [ "$status" = ok ]
}
fail=0
if [ "${FUZZ_PARALLEL:-0}" = 1 ]; then
  export FUZZ_NICE=19
  pids=()
  for t in "${targets[@]}"; do run "$t" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || fail=1; done
else
  for t in "${targets[@]}"; do run "$t" || fail=1; done
fi
exit $fail
