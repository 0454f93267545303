#!/usr/bin/env bash
# ActiveMQ Classic from Debian (package activemq, 5.17), for benchmarks: STOMP on $STOMP_PORT
# (61643), no OpenWire, in its own directory, never the system service. Non-persistent (in
# memory, like romp's non-persistent traffic) unless ACTIVEMQ_PERSISTENT=true: then KahaDB in
# the directory, with its default journalDiskSyncStrategy "always" (the journal is fsynced
# before a persistent SEND is acknowledged, so a RECEIPT means "on disk" as in romp).
# Usage: scripts/peers/activemq.sh start|stop|install
set -euo pipefail
dir=${ACTIVEMQ_DIR:-/tmp/romp-peer-activemq}
port=${STOMP_PORT:-61643}
persistent=${ACTIVEMQ_PERSISTENT:-false}
store=""
[ "$persistent" = true ] && store="<persistenceAdapter><kahaDB directory=\"$dir/data/kahadb\" journalDiskSyncStrategy=\"always\"/></persistenceAdapter>"
case "${1:-}" in
  install)
    [ -f /usr/share/activemq/bin/activemq.jar ] || { apt-get update >/dev/null && apt-get install -y activemq >/dev/null; }
    ;;
  start)
    "$0" install
    rm -rf "$dir/data"
    mkdir -p "$dir/conf" "$dir/data"
    cp /etc/activemq/instances-available/main/log4j2.properties "$dir/conf/" 2>/dev/null || true
    cat >"$dir/conf/activemq.xml" <<XML
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="romp-peer" persistent="$persistent" useJmx="false" dataDirectory="$dir/data">
    $store
    <systemUsage><systemUsage><memoryUsage><memoryUsage limit="256 mb"/></memoryUsage></systemUsage></systemUsage>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp+nio://127.0.0.1:$port?transport.closeAsync=false"/>
    </transportConnectors>
  </broker>
</beans>
XML
    java -Xms512M -Xmx512M -Dactivemq.home=/usr/share/activemq -Dactivemq.base="$dir" -Dactivemq.conf="$dir/conf" \
      -Dactivemq.data="$dir/data" -jar /usr/share/activemq/bin/activemq.jar start "xbean:file:$dir/conf/activemq.xml" \
      >"$dir/server.out" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 300); do
      if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null; then
        echo "activemq STOMP on 127.0.0.1:$port"; exit 0
      fi
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.1
    done
    echo "activemq did not start; see $dir/server.out: $(tail -2 "$dir/server.out" | tr '\n' ' ')" >&2
    "$0" stop
    exit 1
    ;;
  stop)
    [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null || break; sleep 0.1; done
    [ -f "$dir/pid" ] && kill -9 "$(cat "$dir/pid")" 2>/dev/null || true
    rm -f "$dir/pid"
    ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
