// peer ws: an echo server on Node's ws (with its native add-ons bufferutil and
// utf-8-validate), measured side by side with kite by bench/run.sh.
//
// Same convention as `kite echo`: every text or binary message comes back as one
// message of the same type; the first stdout line is "listening on ws://HOST:PORT/";
// --port 0 picks a free port; SIGTERM or SIGINT ends it. Messages up to 16 MiB are
// accepted (ws closes bigger ones with 1009, RFC 6455 §7.4.1).
//
// Variants: --tls-cert/--tls-key serve wss:// from an https.createServer (the listening
// line then says wss://); --deflate accepts permessage-deflate (RFC 7692) with ws's
// defaults, except the threshold: ws compresses only messages of 1024 bytes or more,
// lowered here to kite's 64 so that both compress the same messages. Without --deflate
// there is no permessage-deflate.
//
// Usage: node ws_echo.mjs [--host IPV4] [--port N] [--tls-cert PEM --tls-key PEM]
//                         [--deflate] [-q]
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { createRequire } from 'node:module';
import { WebSocketServer } from 'ws';

const require = createRequire(import.meta.url);
// ws uses the add-ons when it can load them and silently falls back to JavaScript when
// it cannot: fail instead, so a benchmark never measures the fallback by mistake.
for (const addon of ['bufferutil', 'utf-8-validate']) {
  try {
    require(addon);
  } catch (e) {
    console.error(`ws_echo: cannot load ${addon} (npm install in bench/peers): ${e.message}`);
    process.exit(1);
  }
}

let host = '127.0.0.1';
let port = 0;
let tlsCert = null;
let tlsKey = null;
let deflate = false;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '-q') continue; // nothing is logged anyway
  else if (args[i] === '--host' && i + 1 < args.length) host = args[++i];
  else if (args[i] === '--port' && i + 1 < args.length) port = Number(args[++i]);
  else if (args[i] === '--tls-cert' && i + 1 < args.length) tlsCert = args[++i];
  else if (args[i] === '--tls-key' && i + 1 < args.length) tlsKey = args[++i];
  else if (args[i] === '--deflate') deflate = true;
  else {
    console.error('usage: node ws_echo.mjs [--host IPV4] [--port N] ' +
                  '[--tls-cert PEM --tls-key PEM] [--deflate] [-q]');
    process.exit(2);
  }
}
if (!tlsCert !== !tlsKey) {
  console.error('ws_echo: --tls-cert and --tls-key go together');
  process.exit(2);
}

const options = {
  backlog: 4096,
  maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: deflate ? { threshold: 64 } : false,
};
// With TLS, ws rides on an https server that listens itself (ws's `server` option);
// without, ws listens.
const https = tlsCert
  ? createServer({ cert: readFileSync(tlsCert), key: readFileSync(tlsKey) })
  : null;
const wss = https
  ? new WebSocketServer({ ...options, server: https })
  : new WebSocketServer({ ...options, host, port });
const listener = https || wss;
const scheme = https ? 'wss' : 'ws';

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {}); // a protocol error closes the connection; nothing to log
});

listener.on('listening', () => {
  process.stdout.write(`listening on ${scheme}://${host}:${listener.address().port}/\n`);
});
if (https) https.listen({ host, port, backlog: 4096 });

const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => (https ? https.close(() => process.exit(0)) : process.exit(0)));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
