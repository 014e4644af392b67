// peer ws: an echo server on Node's ws (with its native add-ons bufferutil and
// utf-8-validate), measured side by side with kite by bench/run.sh.
//
// Same convention as `kite echo`: every text or binary message comes back as one
// message of the same type; the first stdout line is "listening on ws://HOST:PORT/";
// --port 0 picks a free port; SIGTERM or SIGINT ends it. Messages up to 16 MiB are
// accepted (ws closes bigger ones with 1009, RFC 6455 §7.4.1). No permessage-deflate.
//
// Usage: node ws_echo.mjs [--host IPV4] [--port N] [-q]
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
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '-q') continue; // nothing is logged anyway
  else if (args[i] === '--host' && i + 1 < args.length) host = args[++i];
  else if (args[i] === '--port' && i + 1 < args.length) port = Number(args[++i]);
  else {
    console.error('usage: node ws_echo.mjs [--host IPV4] [--port N] [-q]');
    process.exit(2);
  }
}

const wss = new WebSocketServer({
  host,
  port,
  backlog: 4096,
  maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {}); // a protocol error closes the connection; nothing to log
});

wss.on('listening', () => {
  process.stdout.write(`listening on ws://${host}:${wss.address().port}/\n`);
});

const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
