// Interop: Node's ws library (written elsewhere) as a client of kite.
//   node ws_client.mjs --kite PATH echo   text, binary, 1 MiB, fragmented send, ping, close
//   node ws_client.mjs --kite PATH demo   greeting, 'Hi, Alice!', bye -> close 1000
// Starts its own kite on port 0, stops it with SIGTERM (exit status must be 0).
// Prints ok/FAIL per check and 'N passed, M failed'. Exit 77 (skipped) without node_modules.
import { randomBytes } from 'node:crypto';
import { startKite, Report, expect, short } from './kite_server.mjs';

let WebSocket;
try {
  ({ WebSocket } = await import('ws'));
} catch {
  console.log('skip: npm package ws is not installed (scripts/install-deps.sh test runs npm install)');
  process.exit(77);
}

// A client whose messages and close can be awaited in order.
class Client {
  static open(url) {
    return new Promise((resolve, reject) => {
      const c = new Client(url);
      c.ws.once('open', () => resolve(c));
      c.ws.once('error', reject);
    });
  }

  constructor(url) {
    this.ws = new WebSocket(url, { maxPayload: 0 });
    this.queue = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed ${code} ${reason}`));
        resolve(this.closeInfo);
      });
    });
    this.ws.on('message', (data, isBinary) => {
      const m = { data: isBinary ? data : data.toString('utf8'), isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(m); else this.queue.push(m);
    });
    this.ws.on('error', () => {});
  }

  next() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeInfo) return Promise.reject(new Error(`connection closed ${this.closeInfo.code}`));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async expectEcho(msg) {
    const m = await this.next();
    const isBinary = Buffer.isBuffer(msg);
    const same = isBinary ? m.isBinary && Buffer.compare(m.data, msg) === 0 : !m.isBinary && m.data === msg;
    expect(same, `${isBinary ? 'binary' : 'text'} ${short(msg)} echoed`,
           `${m.isBinary ? 'binary' : 'text'} ${short(m.data)}`);
  }
}

async function roundtrip(url, msg) {
  const c = await Client.open(url);
  c.ws.send(msg);
  await c.expectEcho(msg);
  c.ws.close(1000);
  await c.closed;
}

async function fragmented(url) {
  // fin: false makes ws send a frame that the next send continues (RFC 6455 5.4).
  const c = await Client.open(url);
  c.ws.send('frag', { fin: false });
  c.ws.send('mented κόσ', { fin: false });
  c.ws.send('με', { fin: true });
  await c.expectEcho('fragmented κόσμε');
  c.ws.send(Buffer.from([0, 1]), { fin: false });
  c.ws.send(Buffer.alloc(0), { fin: false });
  c.ws.send(Buffer.from([2, 255]), { fin: true });
  await c.expectEcho(Buffer.from([0, 1, 2, 255]));
  c.ws.close(1000);
  await c.closed;
}

async function ping(url) {
  const c = await Client.open(url);
  const pong = new Promise((resolve) => c.ws.once('pong', resolve));
  c.ws.ping(Buffer.from('kite-ping'));
  const data = await pong;
  expect(data.toString() === 'kite-ping', "pong 'kite-ping'", `pong ${short(data)}`);
  c.ws.close(1000);
  await c.closed;
}

async function many(url) {
  const c = await Client.open(url);
  for (let i = 0; i < 500; i++) c.ws.send(`message ${i}`);
  for (let i = 0; i < 500; i++) await c.expectEcho(`message ${i}`);
  c.ws.close(1000);
  await c.closed;
}

async function closeWith(url, code, reason) {
  const c = await Client.open(url);
  c.ws.send('before close');
  await c.expectEcho('before close');
  c.ws.close(code, reason);
  // The 'close' event carries the code of the close frame the client received.
  const info = await c.closed;
  expect(info.code === code, `close code ${code} echoed`, `close ${info.code} ${JSON.stringify(info.reason)}`);
}

async function goingAway(srv) {
  const c = await Client.open(srv.url);
  c.ws.send('still here');
  await c.expectEcho('still here');
  srv.terminate();
  const info = await c.closed;
  expect(info.code === 1001, 'close 1001 (going away) on SIGTERM', `close ${info.code} ${JSON.stringify(info.reason)}`);
}

async function demoConversation(url, name, bye) {
  const c = await Client.open(`${url}/echo`);
  await c.expectEcho('Please enter your name');
  c.ws.send(name);
  await c.expectEcho(`Hi, ${name}!`);
  c.ws.send(bye);
  const info = await c.closed;
  expect(info.code === 1000 && info.reason === 'Client said BYE', "close 1000 'Client said BYE'",
         `close ${info.code} ${JSON.stringify(info.reason)}`);
  expect(c.queue.length === 0, 'no message after bye', `${c.queue.length} more`);
}

function args() {
  const a = process.argv.slice(2);
  const i = a.indexOf('--kite');
  const mode = a.find((x, j) => (x === 'echo' || x === 'demo') && j !== i + 1);
  if (i < 0 || !a[i + 1] || !mode) {
    console.error('usage: node ws_client.mjs --kite PATH echo|demo');
    process.exit(2);
  }
  return { kite: a[i + 1], mode };
}

const { kite, mode } = args();
const { default: pkg } = await import('ws/package.json', { with: { type: 'json' } }).catch(() => ({ default: {} }));
console.log(`# ws ${pkg.version || '?'} (Node ${process.version}) as a client of kite ${mode}`);
const report = new Report();
let srv;
const watchdog = setTimeout(() => {
  console.log('FAIL watchdog: expected the run to end within 90s, got more');
  if (srv) srv.kill();
  process.exit(1);
}, 90000);
try {
  srv = await startKite(kite, mode);
} catch (e) {
  console.log(`FAIL start: ${e.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
try {
  if (mode === 'echo') {
    const url = srv.url;
    await report.step('echo.text', () => roundtrip(url, 'hello from ws κόσμε 😀'));
    await report.step('echo.binary', () => roundtrip(url, Buffer.from([...Array(4096).keys()].map((i) => i & 255))));
    await report.step('echo.text-1mib', () => roundtrip(url, 'kite ✓ '.repeat(200000).slice(0, 1 << 20)));
    await report.step('echo.binary-1mib', () => roundtrip(url, randomBytes(1 << 20)));
    await report.step('echo.fragmented-send', () => fragmented(url));
    await report.step('echo.ping', () => ping(url));
    await report.step('echo.500-messages-in-order', () => many(url));
    await report.step('echo.16-concurrent-clients', () =>
      Promise.all([...Array(16).keys()].map((i) => roundtrip(url, `client ${i}`))));
    await report.step('echo.close-1000', () => closeWith(url, 1000, 'normal'));
    await report.step('echo.close-4000-reason', () => closeWith(url, 4000, 'interop done'));
    await report.step('echo.sigterm-going-away', () => goingAway(srv));
  } else {
    await report.step('demo.conversation', () => demoConversation(srv.url, 'Alice', 'bye'));
    await report.step('demo.bye-uppercase', () => demoConversation(srv.url, 'Zoë 😀', 'BYE'));
  }
} finally {
  await report.stopServer(srv, mode);
}
clearTimeout(watchdog);
process.exit(report.finish());
