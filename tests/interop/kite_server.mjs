// Starts a kite program on port 0 for a Node interop test, and a tiny ok/FAIL reporter.
// The program must print `listening on ws://HOST:PORT/` as its first stdout line.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const LISTEN_RE = /^listening on ws:\/\/(\[[0-9A-Fa-f:.]+\]|[^:/[\]]+):(\d+)\/$/;

export async function startKite(kite, mode, args = [], startMs = 30000) {
  const proc = spawn(kite, [mode, '--host', '127.0.0.1', '--port', '0', ...args],
                     { stdio: ['ignore', 'pipe', 'pipe'] });
  const errs = [];
  createInterface({ input: proc.stderr }).on('line', (l) => errs.push(l));
  const lines = createInterface({ input: proc.stdout });
  const first = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), startMs);
    lines.once('line', (l) => { clearTimeout(timer); resolve(l); });
    proc.once('exit', () => { clearTimeout(timer); resolve(null); });
  });
  lines.on('line', () => {});   // keep draining stdout
  // 'close' comes after 'exit' and after the process's stdout and stderr have ended, so
  // by then every log line has been read (callers check the server's log after stop).
  const exited = new Promise((resolve) => {
    if (proc.stdout.closed && proc.stderr.closed &&
        (proc.exitCode !== null || proc.signalCode !== null)) resolve([proc.exitCode, proc.signalCode]);
    else proc.once('close', (code, sig) => resolve([code, sig]));
  });
  const tail = () => errs.slice(-30).join('\n') || '(empty)';
  const kill = () => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); };
  const m = first && LISTEN_RE.exec(first);
  if (!m) {
    kill();
    throw new Error(`kite ${mode}: expected first line 'listening on ws://HOST:PORT/', got ${
      JSON.stringify(first)}; stderr: ${tail()}`);
  }
  let signalled = false;
  // SIGTERM once: a second one during a graceful stop may mean 'stop now'.
  const terminate = () => {
    if (!signalled && proc.exitCode === null && proc.signalCode === null) { signalled = true; proc.kill('SIGTERM'); }
  };
  return {
    proc, terminate, url: `ws://${m[1]}:${m[2]}`, port: Number(m[2]), stderrTail: tail, kill,
    // SIGTERM, then [exit code, signal], or null when it had to be killed.
    async stop(ms = 30000) {
      terminate();
      const r = await Promise.race([exited, new Promise((res) => setTimeout(() => res(null), ms))]);
      if (r === null) kill();
      return r;
    },
  };
}

export class Report {
  constructor() { this.passed = 0; this.failed = 0; }

  async step(name, fn, ms = 20000) {
    let timer;
    try {
      await Promise.race([fn(), new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`no result within ${ms / 1000}s`)), ms);
      })]);
      console.log(`ok ${name}`);
      this.passed++;
    } catch (e) {
      console.log(`FAIL ${name}: ${e && e.message ? e.message : e}`);
      this.failed++;
    } finally {
      clearTimeout(timer);
    }
  }

  async stopServer(srv, name) {
    const r = await srv.stop();
    if (r && r[0] === 0) {
      console.log(`ok ${name}.exit-status-0`);
      this.passed++;
    } else {
      console.log(`FAIL ${name}.exit-status-0: expected exit status 0 after SIGTERM, got ${
        r ? (r[1] ? `signal ${r[1]}` : `status ${r[0]}`) : 'no exit within 30s'}; stderr:\n${srv.stderrTail()}`);
      this.failed++;
    }
  }

  finish() {
    console.log(`${this.passed} passed, ${this.failed} failed`);
    return this.failed ? 1 : 0;
  }
}

export function expect(cond, expected, got) {
  if (!cond) throw new Error(`expected ${expected}, got ${got}`);
}

export function short(v, n = 40) {
  const s = Buffer.isBuffer(v) ? `<${v.length} bytes ${v.subarray(0, 16).toString('hex')}>` : JSON.stringify(v);
  return s.length <= n ? s : `${s.slice(0, n)}...(${v.length})`;
}
