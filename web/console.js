// romp console: STOMP over WebSocket with @stomp/stompjs, plus live broker stats.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  $('url').value = `${scheme}://${location.host || '127.0.0.1:8080'}/stomp`;
  let client = null;
  let received = 0;

  function setConnected(on, text) {
    $('status').textContent = text || (on ? 'connected' : 'disconnected');
    $('status').className = 'status ' + (on ? 'on' : 'off');
    $('connect').disabled = on;
    $('disconnect').disabled = !on;
    $('subscribe').disabled = !on;
    $('send').disabled = !on;
  }

  function addMessage(m) {
    received += 1;
    $('count').textContent = String(received);
    const tr = document.createElement('tr');
    tr.className = 'message';
    for (const text of [new Date().toLocaleTimeString(), m.headers.destination, m.headers['message-id'], m.body]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.lastChild.className = 'body';
    $('messages').tBodies[0].prepend(tr);
    while ($('messages').tBodies[0].rows.length > 200) $('messages').tBodies[0].lastChild.remove();
  }

  $('connect-form').addEventListener('submit', (e) => {
    e.preventDefault();
    client = new StompJs.Client({
      brokerURL: $('url').value,
      connectHeaders: { login: $('login').value, passcode: $('passcode').value },
      reconnectDelay: 0,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
    });
    // The broker closes the socket right after an ERROR: keep the ERROR on screen (a failed
    // login used to show only "disconnected").
    let lastError = '';
    client.onConnect = (frame) => {
      lastError = '';
      setConnected(true, `connected (STOMP ${frame.headers.version})`);
    };
    client.onStompError = (frame) => {
      lastError = `ERROR ${frame.headers.message}${frame.body ? `: ${frame.body}` : ''}`;
      setConnected(false, lastError);
    };
    client.onWebSocketClose = () => setConnected(false, lastError ? `disconnected after ${lastError}` : 'disconnected');
    client.activate();
  });

  $('disconnect').addEventListener('click', async () => {
    if (client) await client.deactivate();
    setConnected(false);
  });

  $('subscribe-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const dest = $('sub-dest').value;
    const receipt = 'sub-' + Date.now();
    const li = document.createElement('li');
    li.textContent = dest + ' (subscribing…)';
    $('subscriptions').appendChild(li);
    client.watchForReceipt(receipt, () => {
      li.textContent = dest;
      li.className = 'subscribed';
    });
    client.subscribe(dest, addMessage, { receipt });
  });

  $('send-form').addEventListener('submit', (e) => {
    e.preventDefault();
    client.publish({ destination: $('send-dest').value, body: $('send-body').value });
  });

  async function refreshStats() {
    try {
      // The stats pages want an admin login on a broker with users: the STOMP login fields.
      const headers = $('login').value ? { Authorization: `Basic ${btoa(`${$('login').value}:${$('passcode').value}`)}` } : {};
      const infoResp = await fetch('romp/info', { headers });
      if (infoResp.status === 401 || infoResp.status === 403) {
        $('stats').textContent = 'stats need an admin login (fill in login and passcode)';
        return;
      }
      const info = await infoResp.json();
      $('server').textContent = info.server;
      $('stats').textContent = `${info.connections} connections on ${info.workers} workers · ` +
        `${info.messages_in} messages in · ${info.messages_out} out · up ${info.uptime_seconds} s`;
      const j = info.journal;
      $('journal').textContent = j ?
        `durable log: ${(j.disk_bytes / 1048576).toFixed(1)} MiB in ${j.segments} segments · ` +
        `${j.syncs} syncs, ${j.records_per_sync.toFixed(1)} records each, p50 ≤ ${j.sync_p50_us_at_most} µs, ` +
        `p99 ≤ ${j.sync_p99_us_at_most} µs · recovered ${info.recovery.messages} messages in ` +
        `${info.recovery.milliseconds} ms at start` : 'durable log: off (memory only)';
      const dests = await (await fetch('romp/destinations', { headers })).json();
      const body = $('destinations').tBodies[0];
      body.replaceChildren();
      for (const d of dests.destinations) {
        const tr = document.createElement('tr');
        for (const v of [d.name, d.kind, d.subscribers, d.depth, d.delivered]) {
          const td = document.createElement('td');
          td.textContent = String(v);
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
    } catch (err) {
      $('stats').textContent = 'stats unavailable (enable_console = false?)';
    }
  }
  refreshStats();
  setInterval(refreshStats, 2000);
  setConnected(false);
})();
