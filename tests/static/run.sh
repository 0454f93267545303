#!/usr/bin/env bash
# The static binary: built by `make static`, checked with file/ldd, then run inside an empty
# chroot (no libc, no /proc, no /etc) where a STOMP client must get CONNECTED and a round trip.
set -euo pipefail
bin=${1:-target/static/romp}
[ -x "$bin" ] || { echo "static test: $bin is missing; run make static" >&2; exit 1; }

desc=$(file -b "$bin")
case "$desc" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "static test: not static: $desc" >&2; exit 1 ;;
esac
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "static test: ldd lists shared libraries:" >&2; ldd "$bin" >&2; exit 1
fi

root=$(mktemp -d /tmp/romp-chroot.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
cp "$bin" "$root/romp"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$(id -u)" = 0 ]; then run=(chroot "$root"); else run=(unshare -r chroot "$root"); fi
"${run[@]}" /romp --port "$port" --web-port 0 --admin-port 0 --workers 1 2>"$root.log" &
pid=$!

python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
deadline = time.time() + 10
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("static test: the chrooted broker did not start")
        time.sleep(0.05)
s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0"
          b"SUBSCRIBE\nid:0\ndestination:/queue/chroot\n\n\0"
          b"SEND\ndestination:/queue/chroot\n\nfrom the empty root\0")
buf = b""
while b"from the empty root\0" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("static test: connection closed early: %r" % buf)
    buf += chunk
assert buf.startswith(b"CONNECTED\n"), buf
print("static test: CONNECTED and a MESSAGE round trip inside an empty chroot")
PY
kill -TERM "$pid"
wait "$pid"
status=$?
pid=
[ "$status" = 0 ] || { echo "static test: exit status $status" >&2; cat "$root.log" >&2; exit 1; }
rm -f "$root.log"
echo "static test: $desc"
