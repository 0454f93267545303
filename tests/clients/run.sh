#!/usr/bin/env bash
# Run third-party STOMP clients (stomp.py, @stomp/stompjs) against a romp binary.
# Usage: tests/clients/run.sh [path/to/romp]. Needs .venv (stomp-py) and tests/clients/node_modules
# (installed by .ci/run or `make client-deps`). Starts one broker, stops it by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${1:-$top/target/debug/romp}
py=$top/.venv/bin/python
[ -x "$bin" ] || { echo "no broker binary at $bin (cargo build first)"; exit 1; }
[ -x "$py" ] || { echo "no $py: run 'make client-deps'"; exit 1; }
[ -d "$here/node_modules/@stomp/stompjs" ] || { echo "no stompjs: run 'make client-deps'"; exit 1; }

. "$top/scripts/lib.sh"
port=$(free_port)
web_port=$(free_port)
tls_port=$(free_port)
web_tls_port=$(free_port)
log=$(mktemp)
data=$(mktemp -d)
# A test CA and a server certificate for 127.0.0.1 (ECDSA P-256), made fresh for every run.
pki="$data/pki"
"$top/scripts/test-pki.sh" "$pki" "romp test CA"
cat >"$data/romp.toml" <<TOML
tls_ports = [$tls_port]
web_tls_port = $web_tls_port
tls_cert = "$pki/server.pem"
tls_key = "$pki/server.key"
TOML
"$bin" --config "$data/romp.toml" --port "$port" --web-port "$web_port" --admin-port 0 --workers 2 --data-dir "$data/log" >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$log" "$data"; }
trap cleanup EXIT
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null && break
  sleep 0.05
done

export ROMP_PORT=$port ROMP_WEB_PORT=$web_port ROMP_TLS_PORT=$tls_port ROMP_WEB_TLS_PORT=$web_tls_port ROMP_CA=$pki/ca.pem
status=0
echo "== stomp.py $("$py" -c 'import stomp; print(stomp.__version__)') over TCP (1.0, 1.1, 1.2), TLS and WebSocket"
timeout 120 "$py" "$here/stomppy_test.py" || status=1
for transport in tcp ws wss; do
  echo "== @stomp/stompjs over $transport"
  (cd "$here" && TRANSPORT=$transport timeout 120 node --test --test-reporter=spec stompjs.test.mjs) || status=1
done
echo "== the console page in headless $(${CHROMIUM:-/usr/bin/chromium} --version 2>/dev/null || echo 'chromium (missing)')"
(cd "$here" && timeout 120 node --test --test-reporter=spec browser.test.mjs) || status=1
echo "== the console page over HTTPS and WSS in headless chromium"
(cd "$here" && SCHEME=https timeout 120 node --test --test-reporter=spec browser.test.mjs) || status=1
if [ $status -ne 0 ]; then
  echo "--- broker log"; tail -50 "$log"
fi
# The broker must stop cleanly on SIGTERM, exit code 0.
kill -TERM "$pid"
if ! timeout 10 tail --pid="$pid" -f /dev/null; then echo "broker did not exit within 10 s of SIGTERM"; status=1; fi
wait "$pid" || { echo "broker exited non-zero after SIGTERM"; status=1; }
trap - EXIT
rm -f "$log"
exit $status
