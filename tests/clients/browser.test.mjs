// The console page in a real headless Chromium (Debian's chromium, driven by playwright-core):
// open the page, connect over WebSocket, subscribe, send, and see the message arrive, while a
// STOMP-over-TCP client sees the same message. The screenshot is kept in artifacts/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { Client } from '@stomp/stompjs';
import { TCPWrapper } from '@stomp/tcp-wrapper';

const PORT = Number(process.env.ROMP_PORT || 61613);
// SCHEME=https: the page over HTTPS on $ROMP_WEB_TLS_PORT, its STOMP over WSS (Chromium is told
// to accept the run's self-made certificate).
const SCHEME = process.env.SCHEME || 'http';
const DEST = `/topic/browser-${SCHEME}`;
const WEB_PORT = Number(SCHEME === 'https' ? process.env.ROMP_WEB_TLS_PORT || 8443 : process.env.ROMP_WEB_PORT || 8080);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function tcpSubscriber(dest) {
  return new Promise((resolve, reject) => {
    const client = new Client({ webSocketFactory: () => new TCPWrapper('127.0.0.1', PORT), reconnectDelay: 0 });
    const got = [];
    client.onConnect = () => {
      client.watchForReceipt('ready', () => resolve({ client, got }));
      client.subscribe(dest, (m) => got.push(m.body), { receipt: 'ready' });
    };
    client.onStompError = (f) => reject(new Error(f.headers.message));
    client.activate();
  });
}

test('the console page connects, subscribes, sends and shows the message', { timeout: 60000 }, async () => {
  const tcp = await tcpSubscriber(DEST);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...(SCHEME === 'https' ? ['--ignore-certificate-errors'] : [])],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${SCHEME}://127.0.0.1:${WEB_PORT}/`);
    assert.equal(new URL(page.url()).protocol, `${SCHEME}:`);
    await page.click('#connect');
    await page.waitForSelector('#status.on', { timeout: 10000 });
    assert.match(await page.textContent('#status'), /STOMP 1\.2/);
    await page.fill('#sub-dest', DEST);
    await page.click('#subscribe');
    await page.waitForSelector('#subscriptions li.subscribed', { timeout: 10000 });
    await page.fill('#send-dest', DEST);
    await page.fill('#send-body', 'hello from chromium');
    await page.click('#send');
    await page.waitForSelector('#messages td.body:text-is("hello from chromium")', { timeout: 10000 });
    // Live stats from the console JSON pages.
    await page.waitForFunction(() => /connections on \d+ workers/.test(document.querySelector('#stats').textContent), null, { timeout: 10000 });
    // The broker runs with a data directory: the durable log's figures are shown.
    await page.waitForFunction(() => /durable log: [\d.]+ MiB in \d+ segments .* recovered \d+ messages/.test(document.querySelector('#journal').textContent), null, { timeout: 10000 });
    // The live table catches up: two subscribers (the page and the TCP client), two deliveries.
    await page.waitForFunction((dest) => [...document.querySelectorAll('#destinations tr')].some((tr) => {
      const c = [...tr.cells].map((td) => td.textContent);
      return c[0] === dest && c[1] === 'topic' && c[2] === '2' && c[4] === '2';
    }), DEST, { timeout: 10000 });
    // Peek at a queue: its messages appear in the table, marked, and stay in the queue.
    const QUEUE = `/queue/browser-peek-${SCHEME}`;
    await page.fill('#send-dest', QUEUE);
    for (const body of ['kept one', 'kept two']) {
      await page.fill('#send-body', body);
      await page.click('#send');
    }
    await page.waitForFunction((q) => [...document.querySelectorAll('#destinations tr')].some((tr) => {
      const c = [...tr.cells].map((td) => td.textContent);
      return c[0] === q && c[3] === '2';
    }), QUEUE, { timeout: 10000 });
    await page.fill('#sub-dest', QUEUE);
    await page.click('#peek');
    await page.waitForSelector('#subscriptions li.peeked', { timeout: 10000 });
    assert.match(await page.textContent('#subscriptions li.peeked'), /peeked 2 message/);
    assert.equal(await page.locator('#messages tr.peek').count(), 2);
    // The connection list shows this page's WebSocket session; the rate line is drawn.
    await page.waitForFunction(() => [...document.querySelectorAll('#connections tr')].some((tr) => tr.cells[3] && /^web/.test(tr.cells[3].textContent)), null, { timeout: 10000 });
    await page.waitForFunction(() => /deliveries\/s now/.test(document.querySelector('#rate-now').textContent), null, { timeout: 10000 });
    mkdirSync('artifacts', { recursive: true });
    await page.screenshot({ path: 'artifacts/console.png', fullPage: true });
    // Still two in the queue: peeking consumed nothing.
    await page.waitForFunction((q) => [...document.querySelectorAll('#destinations tr')].some((tr) => {
      const c = [...tr.cells].map((td) => td.textContent);
      return c[0] === q && c[3] === '2';
    }), QUEUE, { timeout: 10000 });
    assert.deepEqual(errors, []);
    for (let i = 0; i < 100 && tcp.got.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(tcp.got, ['hello from chromium']);
    // An ERROR stays on screen after the broker closes: an admin action from the web port.
    await page.fill('#send-dest', '/virt/admin/shutdown');
    await page.click('#send');
    await page.waitForFunction(() => /disconnected after ERROR blocked: .*admin/.test(document.querySelector('#status').textContent), null, { timeout: 10000 });
  } finally {
    await browser.close();
    await tcp.client.deactivate();
  }
});
