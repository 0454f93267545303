# Shared by the scripts (sourced, after they cd to the repository root) and tests/clients/run.sh.

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_file NAME: an empty $BENCH_OUT/NAME (bench/ by default) for a benchmark's raw results;
# prints its path.
bench_file() {
  local out=${BENCH_OUT:-bench}
  mkdir -p "$out"
  : >"$out/$1"
  echo "$out/$1"
}
