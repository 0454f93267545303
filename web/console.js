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
    $('peek').disabled = !on;
    $('send').disabled = !on;
  }

  // The table keeps the last 200 rows (a busy subscription must not grow the page forever).
  function addMessage(m, kind = 'message') {
    received += 1;
    $('count').textContent = String(received);
    const tr = document.createElement('tr');
    tr.className = kind;
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

  // Peek: browse a queue (browser:true) into the table without consuming; the broker ends the
  // browse with a MESSAGE carrying browser:end.
  $('peek').addEventListener('click', () => {
    const dest = $('sub-dest').value;
    const li = document.createElement('li');
    li.textContent = `${dest} (peeking…)`;
    $('subscriptions').appendChild(li);
    let seen = 0;
    const sub = client.subscribe(dest, (m) => {
      if (m.headers.browser === 'end') {
        sub.unsubscribe();
        li.textContent = `${dest}: peeked ${seen} message(s)${m.headers['browser-truncated'] ? ' (more held)' : ''}`;
        li.className = 'peeked';
        return;
      }
      seen += 1;
      addMessage(m, 'peek');
    }, { browser: 'true' });
  });

  $('send-form').addEventListener('submit', (e) => {
    e.preventDefault();
    client.publish({ destination: $('send-dest').value, body: $('send-body').value });
  });

  // Deliveries per second: per destination from successive pages, and the total over the last
  // 60 samples (two minutes) drawn as a line.
  let prev = null;
  const history = [];
  function drawRates() {
    const c = $('rates');
    const g = c.getContext('2d');
    g.clearRect(0, 0, c.width, c.height);
    const max = Math.max(1, ...history);
    g.strokeStyle = '#2e6b8b';
    g.beginPath();
    history.forEach((v, i) => {
      const x = (i / 59) * (c.width - 2) + 1;
      const y = c.height - 2 - (v / max) * (c.height - 4);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    $('rate-now').textContent = `${(history[history.length - 1] || 0).toFixed(0)} deliveries/s now, peak ${max.toFixed(0)} in view`;
  }

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
      const now = Date.now();
      const seconds = prev ? Math.max(0.001, (now - prev.at) / 1000) : 0;
      const rate = (d) => (prev && prev.delivered.has(d.name) ? Math.max(0, d.delivered - prev.delivered.get(d.name)) / seconds : 0);
      const body = $('destinations').tBodies[0];
      body.replaceChildren();
      let total = 0;
      for (const d of dests.destinations) {
        const r = rate(d);
        total += r;
        const tr = document.createElement('tr');
        for (const v of [d.name, d.kind, d.subscribers, d.depth, d.delivered, r.toFixed(1)]) {
          const td = document.createElement('td');
          td.textContent = String(v);
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
      prev = { at: now, delivered: new Map(dests.destinations.map((d) => [d.name, d.delivered])) };
      history.push(total);
      while (history.length > 60) history.shift();
      drawRates();
      const conns = await (await fetch('romp/connections', { headers })).json();
      const cbody = $('connections').tBodies[0];
      cbody.replaceChildren();
      for (const c of conns.connections) {
        const tr = document.createElement('tr');
        for (const v of [c.session, c.peer, c.login || '-', c.transport, c.version, c.subscriptions, c.pending_bytes]) {
          const td = document.createElement('td');
          td.textContent = String(v);
          tr.appendChild(td);
        }
        cbody.appendChild(tr);
      }
      $('conn-note').textContent = conns.truncated ? '(more than listed)' : String(conns.connections.length);
    } catch (err) {
      $('stats').textContent = 'stats unavailable (enable_console = false?)';
    }
  }
  refreshStats();
  setInterval(refreshStats, 2000);
  setConnected(false);
})();
