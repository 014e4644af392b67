// Interop: Node's ws as a wss:// client of kite (kite's TLS listener).
//   node wss_ws_client.mjs --kite PATH
// Starts `kite echo` and `kite demo` with --tls-cert/--tls-key (a throwaway CA made by
// gen_certs.sh) on 127.0.0.1 port 0 and talks to them over TLS, trusting the test CA
// (`ca`), and once with verification explicitly off (rejectUnauthorized: false); with
// Node's default trust store the certificate must be refused. Each server is stopped
// with SIGTERM and must exit 0. Prints ok/FAIL per check and 'N passed, M failed'.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Report, expect } from './kite_server.mjs';

let WebSocket;
try {
  ({ WebSocket } = await import('ws'));
} catch {
  console.log('skip: npm package ws is not installed (scripts/install-deps.sh test runs npm install)');
  process.exit(77);
}

const here = dirname(fileURLToPath(import.meta.url));
const ki = process.argv.indexOf('--kite');
if (ki < 0 || !process.argv[ki + 1]) {
  console.log('usage: node wss_ws_client.mjs --kite PATH');
  process.exit(2);
}
const kite = process.argv[ki + 1];
const certs = mkdtempSync(join(tmpdir(), 'kite-interop-'));
execFileSync('sh', [join(here, 'gen_certs.sh'), certs]);
const ca = readFileSync(join(certs, 'ca.pem'));

async function startTls(mode) {
  const proc = spawn(kite, [mode, '--host', '127.0.0.1', '--port', '0', '-q',
                            '--tls-cert', join(certs, 'server.crt'), '--tls-key', join(certs, 'server.key')],
                     { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stderr.resume();
  const lines = createInterface({ input: proc.stdout });
  const first = await new Promise((resolve) => {
    const t = setTimeout(() => resolve(null), 10000);
    lines.once('line', (l) => { clearTimeout(t); resolve(l); });
  });
  lines.on('line', () => {});
  const m = first && /^listening on wss:\/\/127\.0\.0\.1:(\d+)\/$/.exec(first);
  if (!m) { proc.kill('SIGKILL'); throw new Error(`kite ${mode}: first line ${JSON.stringify(first)}`); }
  const exited = new Promise((resolve) => proc.once('exit', (code, sig) => resolve([code, sig])));
  return {
    port: Number(m[1]),
    async stop() {
      proc.kill('SIGTERM');
      return Promise.race([exited, new Promise((res) => setTimeout(() => res(null), 30000))]);
    },
  };
}

// Open, send each message, collect as many replies; resolves [replies, closeInfo].
function talk(url, opts, msgs, { closeCode = 1000, expectServerClose = false } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 0, ...opts });
    const got = [];
    ws.on('error', reject);
    ws.on('open', () => { for (const m of msgs) ws.send(m); });
    ws.on('message', (data, isBinary) => {
      got.push(isBinary ? Buffer.from(data) : data.toString('utf8'));
      if (!expectServerClose && got.length === msgs.length) ws.close(closeCode, 'done');
    });
    ws.on('close', (code, reason) => resolve([got, { code, reason: reason.toString() }]));
  });
}

const r = new Report();
const echo = await startTls('echo');
const url = `wss://localhost:${echo.port}/`;
await r.step('echo: text, binary, 1 MiB over TLS, trusting the test CA', async () => {
  const big = 'y'.repeat(1 << 20), bin = Buffer.alloc(1 << 20, 7);
  const [got, ci] = await talk(url, { ca }, ['hello over TLS', Buffer.from([0, 1, 255]), big, bin]);
  expect(got[0] === 'hello over TLS', 'the text echoed', got[0]);
  expect(Buffer.isBuffer(got[1]) && got[1].equals(Buffer.from([0, 1, 255])), 'the binary echoed', got[1]);
  expect(got[2] === big && Buffer.isBuffer(got[3]) && got[3].equals(bin), 'both 1 MiB echoed', got.length);
  expect(ci.code === 1000, 'close 1000', ci.code);
});
await r.step('echo: 500 messages in order', async () => {
  const msgs = Array.from({ length: 500 }, (_, i) => `m${i}`);
  const [got] = await talk(url, { ca }, msgs);
  expect(JSON.stringify(got) === JSON.stringify(msgs), '500 echoes in order', got.length);
});
await r.step('echo: 16 concurrent TLS clients', async () => {
  const all = await Promise.all(Array.from({ length: 16 }, (_, i) => talk(url, { ca }, [`c${i}`])));
  all.forEach(([got], i) => expect(got[0] === `c${i}`, `c${i}`, got[0]));
});
await r.step('echo: close 4000 echoed', async () => {
  const [, ci] = await talk(url, { ca }, ['x'], { closeCode: 4000 });
  expect(ci.code === 4000, 'close 4000 echoed', ci.code);
});
await r.step('echo: verification explicitly disabled', async () => {
  const [got] = await talk(url, { rejectUnauthorized: false }, ['insecure']);
  expect(got[0] === 'insecure', "'insecure'", got[0]);
});
await r.step('echo: the default trust store refuses the test CA', async () => {
  try {
    await talk(url, {}, ['x']);
  } catch (e) {
    expect(/certificate/i.test(e.message), 'a certificate error', e.message);
    return;
  }
  throw new Error('expected a certificate error, got a connection');
});
let st = await echo.stop();
await r.step('echo: exit status 0 after SIGTERM', async () => expect(st && st[0] === 0, 'status 0', JSON.stringify(st)));

const demo = await startTls('demo');
await r.step('demo: greeting, Hi, bye -> 1000 over TLS', async () => {
  const [got, ci] = await talk(`wss://localhost:${demo.port}/echo`, { ca }, ['Alice', 'bye'],
                               { expectServerClose: true });
  expect(got[0] === 'Please enter your name' && got[1] === 'Hi, Alice!', 'greeting and Hi', JSON.stringify(got));
  expect(ci.code === 1000 && ci.reason === 'Client said BYE', "1000 'Client said BYE'", JSON.stringify(ci));
});
st = await demo.stop();
await r.step('demo: exit status 0 after SIGTERM', async () => expect(st && st[0] === 0, 'status 0', JSON.stringify(st)));
rmSync(certs, { recursive: true, force: true });
process.exit(r.finish());
