// @stomp/stompjs over TCP (@stomp/tcp-wrapper) against a running romp on $ROMP_PORT.
// Run by tests/clients/run.sh with node's built-in test runner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import { TCPWrapper } from '@stomp/tcp-wrapper';
import WebSocket from 'ws';
import { readFileSync } from 'node:fs';

// TRANSPORT=tcp (default): STOMP over TCP on $ROMP_PORT; TRANSPORT=ws: STOMP over WebSocket on
// $ROMP_WEB_PORT at /stomp, with the subprotocols stompjs offers in browsers; TRANSPORT=wss: the
// same over TLS on $ROMP_WEB_TLS_PORT, trusting only the run's test CA ($ROMP_CA).
const PORT = Number(process.env.ROMP_PORT || 61613);
const WEB_PORT = Number(process.env.ROMP_WEB_PORT || 8080);
const WEB_TLS_PORT = Number(process.env.ROMP_WEB_TLS_PORT || 8443);
const TRANSPORT = process.env.TRANSPORT || 'tcp';
const WAIT = 10000;

function socket() {
  if (TRANSPORT === 'wss') {
    const ws = new WebSocket(`wss://127.0.0.1:${WEB_TLS_PORT}/stomp`, ['v12.stomp', 'v11.stomp', 'v10.stomp'],
      { ca: readFileSync(process.env.ROMP_CA), rejectUnauthorized: true });
    ws.binaryType = 'arraybuffer';
    return ws;
  }
  if (TRANSPORT === 'ws') {
    const ws = new WebSocket(`ws://127.0.0.1:${WEB_PORT}/stomp`, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
    ws.binaryType = 'arraybuffer';
    return ws;
  }
  return new TCPWrapper('127.0.0.1', PORT);
}

function connect(extra = {}) {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: socket,
      reconnectDelay: 0,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      ...extra,
    });
    const timer = setTimeout(() => reject(new Error('connect timed out')), WAIT);
    client.onConnect = (frame) => {
      clearTimeout(timer);
      resolve({ client, frame });
    };
    client.onStompError = (frame) => reject(new Error(`ERROR ${frame.headers.message}: ${frame.body}`));
    client.onWebSocketError = (e) => reject(e);
    client.activate();
  });
}

// Collect `n` messages from a subscription.
function collect(client, dest, n, headers = {}, onMessage = () => {}) {
  const got = [];
  let sub;
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${n} on ${dest}`)), WAIT);
    sub = client.subscribe(dest, (m) => {
      got.push(m);
      onMessage(m);
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    }, headers);
  });
  return { done, sub: () => sub };
}

function receipt(client, send) {
  const id = `r-${Math.random().toString(36).slice(2)}`;
  const p = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no RECEIPT ${id}`)), WAIT);
    client.watchForReceipt(id, (f) => {
      clearTimeout(timer);
      resolve(f);
    });
  });
  send(id);
  return p;
}

test(`connect negotiates 1.2 and non-zero heart-beats (${TRANSPORT})`, async () => {
  const { client, frame } = await connect();
  if (TRANSPORT !== 'tcp') assert.equal(client.webSocket.protocol, 'v12.stomp');
  assert.equal(client.connectedVersion, '1.2');
  assert.equal(frame.headers['heart-beat'], '10000,10000');
  await client.deactivate();
});

test('subscribe, send, receive on a topic with headers and a receipt', async () => {
  const { client } = await connect();
  const c = collect(client, '/topic/js', 1);
  await receipt(client, (id) => client.publish({ destination: '/topic/js-warmup', headers: { receipt: id } }));
  const r = await receipt(client, (id) => client.publish({ destination: '/topic/js', body: 'hello js', headers: { 'x-app': 'a:b', receipt: id } }));
  assert.ok(r.headers['receipt-id']);
  const [m] = await c.done;
  assert.equal(m.body, 'hello js');
  assert.equal(m.headers['x-app'], 'a:b');
  assert.equal(m.headers.destination, '/topic/js');
  await client.deactivate();
});

test('one mebibyte binary body', async () => {
  const { client } = await connect();
  const c = collect(client, '/queue/js-big', 1);
  const bytes = new Uint8Array(1 << 20).map((_, i) => i % 251);
  client.publish({ destination: '/queue/js-big', binaryBody: bytes });
  const [m] = await c.done;
  assert.equal(m.binaryBody.length, bytes.length);
  assert.ok(m.binaryBody.every((b, i) => b === i % 251));
  await client.deactivate();
});

test('binary body with NULs', async () => {
  const { client } = await connect();
  const c = collect(client, '/queue/js-bin', 1);
  const bytes = new Uint8Array([0, 1, 2, 0, 255, 0]);
  client.publish({ destination: '/queue/js-bin', binaryBody: bytes });
  const [m] = await c.done;
  assert.deepEqual(Array.from(m.binaryBody), Array.from(bytes));
  await client.deactivate();
});

test('client-individual ack and nack redelivery on a queue', async () => {
  const { client } = await connect();
  let nacked = false;
  const c = collect(client, '/queue/js-ack', 3, { ack: 'client-individual' }, (m) => {
    if (m.body === 'one' && !nacked) {
      nacked = true;
      m.nack();
    } else {
      m.ack();
    }
  });
  client.publish({ destination: '/queue/js-ack', body: 'one' });
  client.publish({ destination: '/queue/js-ack', body: 'two' });
  const got = await c.done;
  const bodies = got.map((m) => m.body);
  assert.deepEqual(bodies.slice().sort(), ['one', 'one', 'two']);
  const again = got.filter((m) => m.body === 'one')[1];
  assert.equal(again.headers.redelivered, 'true');
  await client.deactivate();
  // Everything was acked: a new consumer finds the queue empty.
  const { client: c2 } = await connect();
  let extra = 0;
  c2.subscribe('/queue/js-ack', () => extra++);
  await receipt(c2, (id) => c2.publish({ destination: '/topic/js-sync', headers: { receipt: id } }));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(extra, 0);
  await c2.deactivate();
});

test('transactions: commit delivers, abort discards', async () => {
  const { client } = await connect();
  const c = collect(client, '/queue/js-tx', 2);
  const tx = client.begin();
  client.publish({ destination: '/queue/js-tx', body: 't1', headers: { transaction: tx.id } });
  client.publish({ destination: '/queue/js-tx', body: 't2', headers: { transaction: tx.id } });
  const ab = client.begin();
  client.publish({ destination: '/queue/js-tx', body: 'gone', headers: { transaction: ab.id } });
  ab.abort();
  tx.commit();
  const got = await c.done;
  assert.deepEqual(got.map((m) => m.body), ['t1', 't2']);
  await new Promise((r) => setTimeout(r, 300));
  await client.deactivate();
});

test('unacked messages go to another consumer when a client disconnects', async () => {
  const { client: a } = await connect();
  const first = collect(a, '/queue/js-redeliver', 1, { ack: 'client' });
  a.publish({ destination: '/queue/js-redeliver', body: 'keep me' });
  await first.done;
  await a.deactivate();
  const { client: b } = await connect();
  const second = collect(b, '/queue/js-redeliver', 1, { ack: 'auto' });
  const [m] = await second.done;
  assert.equal(m.body, 'keep me');
  assert.equal(m.headers.redelivered, 'true');
  await b.deactivate();
});

test('a durable subscription (RabbitMQ spelling) keeps persistent messages while away', async () => {
  const who = { connectHeaders: { 'client-id': `js-app-${TRANSPORT}` } };
  const headers = { id: 'js-durable', durable: 'true', 'auto-delete': 'false', ack: 'client-individual' };
  const dest = `/topic/js-durable-${TRANSPORT}`;
  const { client: a } = await connect(who);
  await receipt(a, (id) => a.subscribe(dest, () => {}, { ...headers, receipt: id }));
  await a.deactivate();
  const { client: p } = await connect();
  for (const body of ['one', 'two']) {
    // The RECEIPT of a persistent SEND: the message is on disk.
    await receipt(p, (id) => p.publish({ destination: dest, body, headers: { persistent: 'true', receipt: id } }));
  }
  const { client: b } = await connect(who);
  const c = collect(b, dest, 2, headers, (m) => m.ack());
  const got = await c.done;
  assert.deepEqual(got.map((m) => m.body), ['one', 'two']);
  assert.equal(got[0].headers.persistent, 'true');
  // An UNSUBSCRIBE naming it (durable:true) deletes it.
  await receipt(b, (id) => c.sub().unsubscribe({ durable: 'true', receipt: id }));
  await receipt(p, (id) => p.publish({ destination: dest, body: 'nobody keeps this', headers: { receipt: id } }));
  let late = 0;
  b.subscribe(dest, () => late++, headers);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(late, 0);
  await b.deactivate();
  await p.deactivate();
});

test('selectors and ActiveMQ-style wildcards the way stompjs users write them', async () => {
  const { client } = await connect();
  const t = `/topic/js.sel.${TRANSPORT}`;
  const sel = collect(client, `${t}.>`, 2, { selector: "region = 'eu' OR price > 100" });
  await receipt(client, (id) => client.publish({ destination: '/topic/js-warmup', headers: { receipt: id } }));
  const { client: p } = await connect();
  p.publish({ destination: `${t}.a`, body: 'eu', headers: { region: 'eu' } });
  p.publish({ destination: `${t}.b`, body: 'us cheap', headers: { region: 'us', price: '5' } });
  p.publish({ destination: `${t}.c.d`, body: 'us dear', headers: { region: 'us', price: '500' } });
  const got = await sel.done;
  assert.deepEqual(got.map((m) => m.body).sort(), ['eu', 'us dear']);
  await p.deactivate();
  await client.deactivate();
});

test('request and reply through a temporary queue', async () => {
  const { client: svc } = await connect();
  const q = `/queue/js-svc-${TRANSPORT}`;
  const requests = collect(svc, q, 1, {}, (m) => svc.publish({ destination: m.headers['reply-to'], body: `re: ${m.body}` }));
  await receipt(svc, (id) => svc.publish({ destination: '/topic/js-warmup', headers: { receipt: id } }));
  const { client } = await connect();
  const answers = collect(client, '/temp-queue/js-answers', 1);
  client.publish({ destination: q, body: 'hello', headers: { 'reply-to': '/temp-queue/js-answers' } });
  await requests.done;
  const [a] = await answers.done;
  assert.equal(a.body, 're: hello');
  await client.deactivate();
  await svc.deactivate();
});

test('a STOMP ERROR reaches the client before the close', async () => {
  const { client } = await connect();
  const err = new Promise((resolve) => {
    client.onStompError = (f) => resolve(f);
  });
  client.publish({ destination: '' });
  const f = await err;
  assert.equal(f.headers.message, 'syntax');
  await client.deactivate();
});
