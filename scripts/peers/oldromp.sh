#!/usr/bin/env bash
# The previous romp (0.5.2, tokio 0.1) from crates.io, for benchmarks, on $STOMP_PORT (61633).
# Usage: scripts/peers/oldromp.sh start|stop|install. Builds into $OLDROMP_DIR (cargo install).
set -euo pipefail
dir=${OLDROMP_DIR:-/tmp/romp-peer-oldromp}
port=${STOMP_PORT:-61633}
case "${1:-}" in
  install)
    [ -x "$dir/bin/romp" ] || cargo install romp --version 0.5.2 --locked --root "$dir" 2>&1 | tail -3 || cargo install romp --version 0.5.2 --root "$dir"
    ;;
  start)
    "$0" install
    mkdir -p "$dir/conf"
    # Its own config format (read from $ROMP_CONF/romp.toml); generous limits so the bench's
    # frames are not refused. The old broker ignores keys it does not know.
    cat >"$dir/conf/romp.toml" <<CONF
bind_address = "127.0.0.1"
ports = [$port]
admin_port = 0
enable_admin = false
max_message_size = 1048576
max_headers = 20
max_header_len = 1024
max_subs = 1024
[destinations]
CONF
    # It serves only declared destinations: declare what compare.sh and romp-bench's defaults use.
    for d in /queue/bench-{0..9} /topic/bench-{0..9} /queue/cmp-{1..5}-{0..9} /topic/cmp-{1..5}-{0..9} /queue/cmp-{1..5}-req /queue/cmp-{1..5}-reply-{0..9}; do
      printf '[destinations."%s"]\nname = "%s"\nmax_connections = 1000000\nmax_messages = 1000000\nexpiry = 3600000\nmax_message_size = 1048576\n' "$d" "$d" >>"$dir/conf/romp.toml"
    done
    (cd "$dir" && ROMP_CONF="$dir/conf" ulimit -s unlimited 2>/dev/null; ROMP_CONF="$dir/conf" RUST_MIN_STACK=268435456 "$dir/bin/romp" >"$dir/server.out" 2>&1 & echo $! >"$dir/pid")
    for _ in $(seq 100); do
      if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null; then
        echo "old romp on 127.0.0.1:$port"; exit 0
      fi
      sleep 0.1
    done
    echo "old romp did not start; see $dir/server.out" >&2; exit 1
    ;;
  stop)
    [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -f "$dir/pid"
    ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
