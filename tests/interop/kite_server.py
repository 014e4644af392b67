"""Starts a kite program on port 0 for an interop test and stops it with SIGTERM.

Shared by the Python interop scripts. The program must print `listening on ws://HOST:PORT/`
as its first stdout line; its output is drained by threads so it never blocks on a pipe.
"""

import re
import signal
import subprocess
import threading

LISTEN_RE = re.compile(r"^listening on ws://(\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+):(\d+)/$")


class KiteServer:
    def __init__(self, kite, mode, args=(), start_timeout=30.0):
        self.proc = subprocess.Popen([kite, mode, "--host", "127.0.0.1", "--port", "0"] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines, self.errs = [], []
        self._first = threading.Event()
        self._drains = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.errs), daemon=True),
        ]
        for t in self._drains:
            t.start()
        if not self._first.wait(start_timeout) or not self.lines:
            self.kill()
            raise RuntimeError("kite %s printed no listening line within %.0fs; stderr: %s"
                               % (mode, start_timeout, self.stderr_tail()))
        m = LISTEN_RE.match(self.lines[0])
        if not m:
            self.kill()
            raise RuntimeError("kite %s: first line %r is not 'listening on ws://HOST:PORT/'"
                               % (mode, self.lines[0]))
        self.host = m.group(1).strip("[]")
        self.port = int(m.group(2))
        self.url = "ws://%s:%d" % (m.group(1), self.port)
        self.signalled = False

    def terminate(self):
        """Sends SIGTERM once: a second one during a graceful stop may mean 'stop now'."""
        if not self.signalled and self.proc.poll() is None:
            self.signalled = True
            self.proc.send_signal(signal.SIGTERM)

    def _drain(self, pipe, sink):
        for raw in iter(pipe.readline, b""):
            sink.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
            self._first.set()
        self._first.set()

    def stderr_tail(self, n=30):
        return "\n".join(self.errs[-n:]) or "(empty)"

    def stop(self, timeout=30.0):
        """SIGTERM, then the exit status (None if it had to be killed)."""
        self.terminate()
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            status = None
        # The process has exited, but the drain threads may still be reading its last
        # lines: wait for them (they end at EOF) so callers see the whole log.
        for t in self._drains:
            t.join(5.0)
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
