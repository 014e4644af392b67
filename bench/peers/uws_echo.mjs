// peer uws: an echo server on uWebSockets.js, measured side by side with kite by
// bench/run.sh.
//
// uWebSockets is the C++ server the benchmark issue names as the fastest known; its
// Node.js binding, uWebSockets.js, runs the whole WebSocket engine (epoll loop, HTTP
// upgrade, framing, unmasking, UTF-8 checks) in native code and calls into JavaScript
// once per message. uWebSockets.js publishes its binaries on GitHub, not on the npm
// registry, and the builds that are on it need a newer glibc than Debian 12's (2.38),
// except @trufflesuite/uws-js-unofficial: uWebSockets.js v20.30.0 built by Truffle
// Suite for Node.js ABIs 93, 108 and 115, without TLS and without permessage-deflate.
// So this peer runs S1-S4 and the HANDLER scenarios, and is left out of the -TLS and
// -PMD ones. That package falls back to a JavaScript imitation when its binary does not
// load; the binary is loaded here by name instead, so the benchmark fails rather than
// measure the imitation.
//
// The JavaScript callback is the one cost this peer has that a C++ uWebSockets server
// would not: one V8 call per message. On S1/S2 it measures uWebSockets.js, not
// uWebSockets alone; on S3 (one message per MiB) and S4 (no messages at all) it is the
// native engine that is measured.
//
// Same convention as `kite echo`: every text or binary message comes back as one
// message of the same type; the first stdout line is "listening on ws://HOST:PORT/";
// --port 0 picks a free port; SIGTERM or SIGINT ends it. Messages up to 16 MiB are
// accepted (bigger ones are closed with 1009, RFC 6455 §7.4.1).
//
// Usage: node uws_echo.mjs [--host IPV4] [--port N] [-q]
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = '@trufflesuite/uws-js-unofficial';
const binary = `${pkg}/binaries/uws_${process.platform}_${process.arch}_` +
  `${process.versions.modules}.node`;
let uWS;
try {
  uWS = require(binary);
} catch (e) {
  console.error(`uws_echo: cannot load ${binary} (npm install in bench/peers; ` +
                `Node.js 16, 18 or 20): ${e.message}`);
  process.exit(1);
}

let host = '127.0.0.1';
let port = 0;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '-q') continue; // nothing is logged anyway
  else if (args[i] === '--host' && i + 1 < args.length) host = args[++i];
  else if (args[i] === '--port' && i + 1 < args.length) port = Number(args[++i]);
  else {
    console.error('usage: node uws_echo.mjs [--host IPV4] [--port N] [-q] ' +
                  '(this uWebSockets.js build has no TLS and no permessage-deflate)');
    process.exit(2);
  }
}

const app = uWS.App();
app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  idleTimeout: 0, // no idle timeout: S4 holds connections idle
  // uWebSockets.js drops a send once a connection's backlog passes maxBackpressure
  // (64 KiB by default): far above the biggest echo (S3: 1 MiB), so nothing is dropped.
  maxBackpressure: 64 * 1024 * 1024,
  // The message's ArrayBuffer is only valid during this call; send copies it.
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary);
  },
});

let listenSocket = null;
app.listen(host, port, (token) => {
  if (!token) {
    console.error(`uws_echo: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  listenSocket = token;
  process.stdout.write(`listening on ws://${host}:${uWS.us_socket_local_port(token)}/\n`);
});

const stop = () => {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
