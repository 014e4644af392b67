// Interop: the kite demo page in headless Chromium (Debian's browser, driven by
// playwright-core), as a person would use it.
//   node demo_browser.mjs --kite PATH [--chromium PATH]
// Loads http://127.0.0.1:PORT/, waits for the greeting, types a name into the page's text
// box, presses its Send button, waits for 'Hi, NAME!', sends 'bye' and waits for the close
// (code 1000 and reason 'Client said BYE' shown on the page). A screenshot goes to a temp
// file for debugging. Exit 77 (skipped) when Chromium or playwright-core is missing.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKite, Report } from './kite_server.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const kite = opt('--kite');
const chromiumPath = opt('--chromium', process.env.KITE_CHROMIUM || '/usr/bin/chromium');
if (!kite) {
  console.error('usage: node demo_browser.mjs --kite PATH [--chromium PATH]');
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

const NAME = 'Ada Lovelace';
const report = new Report();
let srv;
const watchdog = setTimeout(() => {
  console.log('FAIL watchdog: expected the run to end within 90s, got more');
  if (srv) srv.kill();
  process.exit(1);
}, 90000);
const shot = join(tmpdir(), `kite-demo-${process.pid}.png`);
try {
  srv = await startKite(kite, 'demo');
} catch (e) {
  console.log(`FAIL start: ${e.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const profile = await mkdtemp(join(tmpdir(), 'kite-chromium-'));
let context;
const pageErrors = [];
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
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const box = page.locator('input[type=text], input:not([type]), textarea').first();
    const send = page.getByRole('button', { name: /send/i }).first();
    const bodyHas = async (...parts) => {
      try {
        await page.waitForFunction((ps) => ps.every((p) => document.body.innerText.includes(p)), parts);
      } catch {
        const text = (await page.evaluate(() => document.body.innerText).catch(() => '?')).replace(/\s+/g, ' ');
        throw new Error(`expected the page to show ${parts.map((p) => JSON.stringify(p)).join(' and ')} within 15s, ` +
                        `got page text ${JSON.stringify(text.slice(-300))}`);
      }
    };
    const say = async (text) => { await box.fill(text); await send.click(); };

    await report.step('demo.page-loads', async () => {
      const res = await page.goto(`http://127.0.0.1:${srv.port}/`);
      if (!res || res.status() !== 200) throw new Error(`expected HTTP 200, got ${res && res.status()}`);
    });
    await report.step('demo.greeting-shown', () => bodyHas('Please enter your name'));
    await report.step('demo.name-answered', async () => { await say(NAME); await bodyHas(`Hi, ${NAME}!`); });
    await report.step('demo.bye-closes-1000', async () => {
      await say('bye');
      await bodyHas('1000', 'Client said BYE');
    });
    await report.step('demo.no-page-errors', async () => {
      if (pageErrors.length) throw new Error(`expected no JavaScript errors, got ${pageErrors.join(' | ')}`);
    });
    await page.screenshot({ path: shot, fullPage: true }).then(() => console.log(`# screenshot: ${shot}`),
                                                             () => {});
  }
} finally {
  if (context) await context.close().catch(() => {});
  await rm(profile, { recursive: true, force: true }).catch(() => {});
  await report.stopServer(srv, 'demo');
}
clearTimeout(watchdog);
process.exit(report.finish());
