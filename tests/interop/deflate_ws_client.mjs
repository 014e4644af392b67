// Interop: Node's ws library (written elsewhere) with permessage-deflate (RFC 7692) as a
// client of `kite echo --deflate`.
//   node deflate_ws_client.mjs --kite PATH
// ws compresses only with perMessageDeflate: true (threshold 0 here, so it compresses
// every message). Several client configurations are tried against kite's balanced
// preset: plain, window limits asked of the server and offered for the client, and no
// context takeover both ways. Each checks the agreement (ws.extensions, the 101 header),
// that messages of every kind round-trip, and that kite's frames were compressed: fewer
// bytes read from the socket than the messages hold. kite's log must name the extension.
// A client without perMessageDeflate gets none. Exit 77 without node_modules.
import { randomBytes } from 'node:crypto';
import { startKite, Report, expect, short } from './kite_server.mjs';

let WebSocket;
try {
  ({ WebSocket } = await import('ws'));
} catch {
  console.log('skip: npm package ws is not installed (scripts/install-deps.sh test runs npm install)');
  process.exit(77);
}

const argv = process.argv.slice(2);
const kite = argv[argv.indexOf('--kite') + 1];
if (!kite || argv.indexOf('--kite') < 0) {
  console.error('usage: node deflate_ws_client.mjs --kite PATH');
  process.exit(2);
}

function open(url, perMessageDeflate) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 0, perMessageDeflate });
    const c = { ws, queue: [], waiters: [], header: null };
    ws.on('upgrade', (res) => { c.header = res.headers['sec-websocket-extensions'] ?? null; });
    ws.on('message', (data, isBinary) => {
      const m = { data: isBinary ? data : data.toString('utf8'), isBinary };
      const w = c.waiters.shift();
      if (w) w(m); else c.queue.push(m);
    });
    ws.once('open', () => resolve(c));
    ws.once('error', reject);
  });
}

const next = (c) => (c.queue.length ? Promise.resolve(c.queue.shift())
  : new Promise((resolve) => c.waiters.push(resolve)));

async function echoAll(c, msgs) {
  for (const m of msgs) {
    c.ws.send(m);
    const got = await next(c);
    const bin = Buffer.isBuffer(m);
    const same = bin ? got.isBinary && Buffer.compare(got.data, m) === 0 : !got.isBinary && got.data === m;
    expect(same, `${bin ? 'binary' : 'text'} ${short(m)} echoed`, `${got.isBinary ? 'binary' : 'text'} ${short(got.data)}`);
  }
}

function jsonLike(i) {
  const words = ['order', 'price', 'update', 'filled', 'market', 'user', 'status', 'active'];
  const text = Array.from({ length: 5 + (i * 7) % 50 }, (_, k) => words[(i * 31 + k * 17) % words.length]).join(' ');
  return JSON.stringify({ type: 'trade', seq: 100000 + i, symbol: ['BTC-USD', 'ETH-USD'][i % 2],
                          price: `${(i * 7919) % 90000}.${i % 100}`, user: { id: i % 5000, name: `user${i % 5000}` }, text });
}

async function closeClean(c) {
  await new Promise((resolve) => { c.ws.once('close', resolve); c.ws.close(1000); });
}

const report = new Report();
const watchdog = setTimeout(() => { console.log('FAIL watchdog: expected the run to end within 90s'); process.exit(1); }, 90000);
let srv;
try {
  srv = await startKite(kite, 'echo', ['--deflate']);
} catch (e) {
  console.log(`FAIL start: ${e.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const url = `${srv.url}/z`;
const configs = [
  ['defaults', { threshold: 0 }, /^permessage-deflate; server_max_window_bits=13; client_max_window_bits=13$/],
  ['windows 10 both ways', { threshold: 0, serverMaxWindowBits: 10, clientMaxWindowBits: 10 },
   /^permessage-deflate; server_max_window_bits=10; client_max_window_bits=10$/],
  ['no context takeover', { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true },
   /^permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=13; client_max_window_bits=13$/],
];
try {
  for (const [name, opts, want] of configs) {
    await report.step(`deflate.${name}`, async () => {
      const c = await open(url, opts);
      expect(c.header !== null && want.test(c.header), `Sec-WebSocket-Extensions matching ${want}`, c.header);
      expect(c.ws.extensions === 'permessage-deflate', 'ws to use permessage-deflate', c.ws.extensions);
      const msgs = Array.from({ length: 300 }, (_, i) => jsonLike(i));
      const before = c.ws._socket.bytesRead;
      await echoAll(c, msgs);
      const raw = msgs.reduce((n, m) => n + Buffer.byteLength(m), 0);
      const read = c.ws._socket.bytesRead - before;
      expect(read < raw * 0.6, `echoes compressed below 60% of ${raw} bytes`, read);
      const big = 'kite speaks permessage-deflate '.repeat(40000);
      const b0 = c.ws._socket.bytesRead;
      await echoAll(c, [big, Buffer.from(big)]);
      expect(c.ws._socket.bytesRead - b0 < (2 * big.length) / 20, '2x1.2 MB compressed 20x',
             c.ws._socket.bytesRead - b0);
      await echoAll(c, [randomBytes(100000), Buffer.alloc(0), '', 'short', 'κόσμε'.repeat(300)]);
      await closeClean(c);
    });
  }
  await report.step('deflate.client-without-compression', async () => {
    const c = await open(url, false);
    expect(c.header === null, 'no Sec-WebSocket-Extensions', c.header);
    await echoAll(c, ['plain '.repeat(100), Buffer.alloc(1000)]);
    await closeClean(c);
  });
} finally {
  await report.stopServer(srv, 'echo');
}
await report.step('deflate.kite-logged-the-agreement', async () => {
  const tail = srv.stderrTail();
  const opens = tail.split('\n').filter((l) => l.includes(' open /z '));
  const withExt = opens.filter((l) => l.includes('extensions permessage-deflate'));
  expect(opens.length === 4 && withExt.length === 3, '4 open lines, 3 naming permessage-deflate', tail);
});
clearTimeout(watchdog);
process.exit(report.finish());
