// Interop: the kite client (through `kite cat`) against a Node ws server.
//   node client_vs_ws.mjs --kite PATH
// The server runs in this process, plain (ws://) and with TLS (wss://, a throwaway CA
// made by gen_certs.sh). It echoes every message and records what it received (types,
// request headers, subprotocol), so each check looks at both ends: what `kite cat`
// printed and exited with, and what the server saw. Prints ok/FAIL per check and
// 'N passed, M failed'. Exit 77 (skipped) without node_modules.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Report, expect } from './kite_server.mjs';

let WebSocketServer;
try {
  ({ WebSocketServer } = await import('ws'));
} catch {
  console.log('skip: npm package ws is not installed (scripts/install-deps.sh test runs npm install)');
  process.exit(77);
}

const here = dirname(fileURLToPath(import.meta.url));
const ki = process.argv.indexOf('--kite');
if (ki < 0 || !process.argv[ki + 1]) {
  console.log('usage: node client_vs_ws.mjs --kite PATH');
  process.exit(2);
}
const kite = process.argv[ki + 1];

const seen = []; // one record per connection the server accepted

function attach(wss) {
  wss.on('connection', (ws, req) => {
    const rec = { url: req.url, headers: req.headers, protocol: ws.protocol, messages: [],
                  extensions: ws.extensions };
    seen.push(rec);
    ws.on('message', (data, isBinary) => {
      rec.messages.push(isBinary ? { binary: Buffer.from(data).toString('hex') } : data.toString('utf8'));
      if (!isBinary && data.toString('utf8') === 'close-me') {
        ws.close(4000, 'bye from node');
        return;
      }
      ws.send(data, { binary: isBinary });
    });
  });
}

// Subprotocol choice: the first of ours the client offers.
const handleProtocols = (offered) => ['chat', 'superchat'].find((p) => offered.has(p)) ?? false;

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

// Run kite cat with `input` on stdin; resolves [status, stdout, stderr].
function kiteCat(args, input, ms = 15000) {
  return new Promise((resolve, reject) => {
    const p = spawn(kite, ['cat', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [], err = [];
    p.stdout.on('data', (d) => out.push(d));
    p.stderr.on('data', (d) => err.push(d));
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error('kite cat to finish in time')); }, ms);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve([code, Buffer.concat(out).toString('utf8'), Buffer.concat(err).toString('utf8')]);
    });
    p.stdin.on('error', () => {});
    p.stdin.end(input);
  });
}

const certs = mkdtempSync(join(tmpdir(), 'kite-interop-'));
execFileSync('sh', [join(here, 'gen_certs.sh'), certs]);
const tlsOf = (name) => ({ cert: readFileSync(join(certs, `${name}.crt`)), key: readFileSync(join(certs, `${name}.key`)) });

const plain = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols, maxPayload: 0,
                                   perMessageDeflate: true });
await new Promise((resolve) => plain.once('listening', resolve));
attach(plain);
const https = createServer(tlsOf('server'));
attach(new WebSocketServer({ server: https, handleProtocols, maxPayload: 0 }));
const httpsOther = createServer(tlsOf('other'));
attach(new WebSocketServer({ server: httpsOther, handleProtocols, maxPayload: 0 }));
const wsUrl = `ws://127.0.0.1:${plain.address().port}`;
const wssUrl = `wss://localhost:${await listen(https)}`;
const otherUrl = `wss://localhost:${await listen(httpsOther)}`;
const ca = join(certs, 'ca.pem');
const last = () => seen[seen.length - 1];

const r = new Report();
await r.step('text lines echoed, server saw text messages and the path', async () => {
  const [st, out, err] = await kiteCat([`${wsUrl}/text?x=1`], 'hello\nκόσμε\n\nlast');
  expect(out === 'hello\nκόσμε\n\nlast\n', 'the lines echoed', JSON.stringify(out));
  expect(err.includes('closed: 1000'), "'closed: 1000' on stderr", err);
  expect(st === 0, 'exit 0', st);
  expect(last().url === '/text?x=1', 'path /text?x=1', last().url);
  expect(JSON.stringify(last().messages) === JSON.stringify(['hello', 'κόσμε', '', 'last']),
         '4 text messages', JSON.stringify(last().messages));
});
await r.step('--binary lines are binary messages', async () => {
  const [st, out] = await kiteCat(['--binary', `${wsUrl}/bin`], 'a\nbc\n');
  expect(st === 0 && out === 'a\nbc\n', 'binary echoed, exit 0', `${st} ${out}`);
  expect(JSON.stringify(last().messages) === JSON.stringify([{ binary: '61' }, { binary: '6263' }]),
         '2 binary messages', JSON.stringify(last().messages));
});
await r.step('header, origin and subprotocol reach the server', async () => {
  const [st, , err] = await kiteCat(['--header', 'Authorization: Bearer t0k', '--subprotocol', 'superchat',
                                     '--origin', 'https://kite.test', `${wsUrl}/h`], 'x\n');
  expect(st === 0, 'exit 0', `${st} ${err}`);
  expect(last().headers.authorization === 'Bearer t0k', 'the Authorization header', JSON.stringify(last().headers));
  expect(last().headers.origin === 'https://kite.test', 'the Origin header', JSON.stringify(last().headers));
  expect(last().protocol === 'superchat', 'subprotocol superchat', last().protocol);
  expect(err.includes('subprotocol superchat'), 'the subprotocol on stderr', err);
});
await r.step('server close 4000 shown and exit 0', async () => {
  const [st, out, err] = await kiteCat([`${wsUrl}/c`], 'one\nclose-me\ntwo\n');
  expect(out.startsWith('one\n'), 'the first line echoed', out);
  expect(err.includes('closed: 4000 bye from node'), "'closed: 4000 bye from node'", err);
  expect(st === 0, 'exit 0 (a clean close)', st);
});
await r.step('1 MiB message', async () => {
  const line = 'x'.repeat(1 << 20);
  const [st, out] = await kiteCat([`${wsUrl}/big`], `${line}\n`);
  expect(st === 0 && out === `${line}\n`, '1 MiB echoed', `${st} ${out.length}`);
});
await r.step('2000 lines in order', async () => {
  let text = '';
  for (let i = 0; i < 2000; i++) text += `line ${i}\n`;
  const [st, out] = await kiteCat([`${wsUrl}/many`], text);
  expect(st === 0 && out === text, '2000 lines echoed in order', `${st} ${out.length}`);
});
await r.step('--deflate: permessage-deflate negotiated, 240 KB compressible echoed', async () => {
  const line = 'compressible '.repeat(20000);
  const [st, out, err] = await kiteCat(['--deflate', `${wsUrl}/z`], `${line}\nsmall\n`);
  expect(st === 0 && out === `${line}\nsmall\n`, 'echoed through permessage-deflate', `${st} ${out.length} ${err}`);
  expect(last().extensions.startsWith('permessage-deflate'), 'permessage-deflate negotiated', last().extensions);
  expect(err.includes('permessage-deflate'), 'the extension on stderr', err);
});
await r.step('wss:// with --ca', async () => {
  const [st, out, err] = await kiteCat(['--ca', ca, `${wssUrl}/tls`], 'secure\n');
  expect(st === 0 && out === 'secure\n', 'echo over TLS, exit 0', `${st} ${out} ${err}`);
  expect(last().messages[0] === 'secure', "the server got 'secure'", JSON.stringify(last()));
});
await r.step('wss:// untrusted certificate refused', async () => {
  const [st, , err] = await kiteCat([`${wssUrl}/tls`], 'x\n');
  expect(st === 1 && err.includes('certificate verification failed'), 'a verification error', `${st} ${err}`);
});
await r.step('wss:// wrong host name refused', async () => {
  const [st, , err] = await kiteCat(['--ca', ca, `${otherUrl}/tls`], 'x\n');
  expect(st === 1 && err.includes('localhost'), 'a host-name mismatch', `${st} ${err}`);
});
await r.step('wss:// --insecure', async () => {
  const [st, out] = await kiteCat(['--insecure', `${wssUrl}/tls`], 'y\n');
  expect(st === 0 && out === 'y\n', 'echo with verification off', `${st} ${out}`);
});

plain.close();
https.close();
httpsOther.close();
rmSync(certs, { recursive: true, force: true });
process.exit(r.finish());
