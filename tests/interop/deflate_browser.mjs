// Interop: headless Chromium (it always offers permessage-deflate) and `kite demo -v`,
// which accepts it by default.
//   node deflate_browser.mjs --kite PATH [--chromium PATH]
// 1. The demo page, used as a person would: a long, repetitive name is typed and sent;
//    the page must show "Hi, NAME!".
// 2. From the page's script, the browser's own WebSocket: ws.extensions must name
//    permessage-deflate, and a 200 KB repetitive message must come back whole.
// 3. From the server side: kite's log (-v) shows each connection's negotiated
//    extensions on its open line, and the sizes of the long messages it received.
// Exit 77 (skipped) when Chromium or playwright-core is missing.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKite, Report, expect } from './kite_server.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const kite = opt('--kite');
const chromiumPath = opt('--chromium', process.env.KITE_CHROMIUM || '/usr/bin/chromium');
if (!kite) {
  console.error('usage: node deflate_browser.mjs --kite PATH [--chromium PATH]');
  process.exit(2);
}
if (!existsSync(chromiumPath)) {
  console.log(`skip: no Chromium at ${chromiumPath} (scripts/install-deps.sh test installs it)`);
  process.exit(77);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  console.log('skip: npm package playwright-core is not installed (scripts/install-deps.sh test runs npm install)');
  process.exit(77);
}

const NAME = 'Ada Lovelace '.repeat(400).trim();        // 5,199 characters, very repetitive
const LONG = 'permessage-deflate round trip; '.repeat(6500); // 201,500 characters
const report = new Report();
let srv;
const watchdog = setTimeout(() => {
  console.log('FAIL watchdog: expected the run to end within 90s, got more');
  if (srv) srv.kill();
  process.exit(1);
}, 90000);
try {
  srv = await startKite(kite, 'demo', ['-v']);
} catch (e) {
  console.log(`FAIL start: ${e.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const profile = await mkdtemp(join(tmpdir(), 'kite-chromium-'));
let context;
try {
  await report.step('browser.launch', async () => {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      timeout: 30000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 40000);
  if (context) {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(15000);
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const box = page.locator('input[type=text], input:not([type]), textarea').first();
    const send = page.getByRole('button', { name: /send/i }).first();

    await report.step('deflate.page-loads', async () => {
      const res = await page.goto(`http://127.0.0.1:${srv.port}/`);
      expect(res && res.status() === 200, 'HTTP 200', res && res.status());
      await page.waitForFunction(() => document.body.innerText.includes('Please enter your name'));
    });
    await report.step('deflate.long-name-through-the-page', async () => {
      await box.fill(NAME);
      await send.click();
      await page.waitForFunction((n) => document.body.innerText.includes(`Hi, ${n}!`), NAME);
    });
    await report.step('deflate.browser-websocket-round-trip', async () => {
      const r = await page.evaluate(async ({ port, long }) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
        const msgs = [];
        let wake = null;
        ws.onmessage = (e) => { msgs.push(e.data); if (wake) wake(); };
        const nextMsg = async () => {
          while (!msgs.length) await new Promise((res) => { wake = res; });
          return msgs.shift();
        };
        await new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error('error')); });
        const greeting = await nextMsg();
        ws.send(long);
        const reply = await nextMsg();
        const closed = new Promise((res) => { ws.onclose = (e) => res(`${e.code} ${e.reason}`); });
        ws.send('bye');
        return { extensions: ws.extensions, greeting, ok: reply === `Hi, ${long}!`, len: reply.length,
                 close: await closed };
      }, { port: srv.port, long: LONG });
      expect(r.extensions.startsWith('permessage-deflate'), 'ws.extensions naming permessage-deflate', r.extensions);
      expect(r.greeting === 'Please enter your name', 'the greeting', r.greeting);
      expect(r.ok, `the ${LONG.length + 5}-character reply, intact`, `${r.len} characters`);
      expect(r.close === '1000 Client said BYE', 'close 1000 Client said BYE', r.close);
    });
    await report.step('deflate.no-page-errors', async () => {
      expect(pageErrors.length === 0, 'no JavaScript errors', pageErrors.join(' | '));
    });
  }
} finally {
  if (context) await context.close().catch(() => {});
  await rm(profile, { recursive: true, force: true }).catch(() => {});
  await report.stopServer(srv, 'demo');
}
await report.step('deflate.server-log-shows-the-agreement', async () => {
  const log = srv.stderrTail(200);
  const opens = log.split('\n').filter((l) => l.includes(' open /echo '));
  expect(opens.length === 2, 'two connections opened on /echo', log);
  for (const l of opens) {
    expect(/extensions permessage-deflate; server_max_window_bits=13; client_max_window_bits=13/.test(l),
           'each open line to name permessage-deflate with 13-bit windows', l);
  }
  expect(log.includes(`text ${NAME.length} bytes`) && log.includes(`text ${LONG.length} bytes`),
         `the long messages received whole (${NAME.length} and ${LONG.length} bytes)`, log);
});
clearTimeout(watchdog);
process.exit(report.finish());
