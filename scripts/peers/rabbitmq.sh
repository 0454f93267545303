#!/usr/bin/env bash
# A private RabbitMQ node for benchmarks: STOMP on $STOMP_PORT (default 61623), Web-STOMP on
# $WEB_STOMP_PORT (15675), AMQP on 5673, in its own directory, never the system service.
# Usage: scripts/peers/rabbitmq.sh start|stop|install
# Installs Debian's rabbitmq-server when missing (as root). `start` prints the node's PID file.
# With RABBIT_TLS_CERT, RABBIT_TLS_KEY and RABBIT_TLS_CA (PEM files) it also serves STOMP over
# TLS on $STOMP_TLS_PORT (61624) with that certificate.
set -euo pipefail
dir=${RABBIT_DIR:-/tmp/romp-peer-rabbitmq}
stomp_port=${STOMP_PORT:-61623}
stomp_tls_port=${STOMP_TLS_PORT:-61624}
web_port=${WEB_STOMP_PORT:-15675}
node=romp-peer@localhost
install() {
  if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server
    # Debian starts the system service; this script runs its own node instead.
    systemctl stop rabbitmq-server 2>/dev/null || service rabbitmq-server stop 2>/dev/null || true
  fi
}
envs() {
  export HOME=$dir RABBITMQ_NODENAME=$node RABBITMQ_NODE_PORT=5673 RABBITMQ_DIST_PORT=25673
  export RABBITMQ_CONFIG_FILE=$dir/rabbitmq RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/pid
}
case "${1:-}" in
  install) install ;;
  start)
    install
    mkdir -p "$dir"
    envs
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 5673
loopback_users = none
stomp.listeners.tcp.1 = 127.0.0.1:$stomp_port
web_stomp.tcp.port = $web_port
web_stomp.tcp.ip = 127.0.0.1
vm_memory_high_watermark.relative = 0.4
CONF
    if [ -n "${RABBIT_TLS_CERT:-}" ]; then
      cat >>"$dir/rabbitmq.conf" <<CONF
stomp.listeners.ssl.1 = 127.0.0.1:$stomp_tls_port
ssl_options.certfile = $RABBIT_TLS_CERT
ssl_options.keyfile = $RABBIT_TLS_KEY
ssl_options.cacertfile = $RABBIT_TLS_CA
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
    fi
    echo '[rabbitmq_stomp,rabbitmq_web_stomp].' >"$dir/enabled_plugins"
    /usr/lib/rabbitmq/bin/rabbitmq-server >"$dir/server.out" 2>&1 &
    echo $! >"$dir/launcher.pid"
    for _ in $(seq 600); do
      if python3 -c "import socket; socket.create_connection(('127.0.0.1',$stomp_port)).close()" 2>/dev/null; then
        echo "rabbitmq STOMP on 127.0.0.1:$stomp_port (node $node, dir $dir)"
        exit 0
      fi
      sleep 0.2
    done
    echo "rabbitmq did not open its STOMP port; see $dir/server.out and $dir/log" >&2
    exit 1
    ;;
  stop)
    envs
    /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node" stop >/dev/null 2>&1 || true
    for f in "$dir/pid" "$dir/launcher.pid"; do
      [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    rm -f "$dir/pid" "$dir/launcher.pid"
    ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
