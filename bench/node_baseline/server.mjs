// A minimal Node.js ConversationRelay server: the BASELINE for bench/relay_load.py, NOT part of the
// product (no database, no personas, no tools, no transcripts, no summaries).
//
// It measures only the forwarding path: Twilio's prompt in, a streamed reply from the Anthropic API
// (the official SDK, pointed at the fake with ANTHROPIC_BASE_URL), every text delta out at once as
// a `text` frame. Interrupts abort the provider's stream and truncate the history to what the caller
// heard. Run by `python -m bench.relay_load --server node`, or alone:
//     npm ci --prefix bench/node_baseline
//     TWILIO_AUTH_TOKEN=... ANTHROPIC_API_KEY=... ANTHROPIC_BASE_URL=http://127.0.0.1:8765 \
//         node bench/node_baseline/server.mjs --port 8000

import crypto from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';
import Anthropic from '@anthropic-ai/sdk';
import { WebSocketServer } from 'ws';

const HOST = '127.0.0.1';
const RELAY_PATHS = new Set(['/ws/relay/', '/ws/relay']);
// As the product's default persona asks (the fake ignores them).
const MODEL = 'claude-haiku-4-5';
const MAX_TOKENS = 300;
const SYSTEM = 'You are a helpful assistant on a phone call. Keep your replies short and spoken.';

const { values } = parseArgs({ options: { port: { type: 'string' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs --port N');
  process.exit(2);
}
const authToken = process.env.TWILIO_AUTH_TOKEN ?? '';
const client = new Anthropic({
  apiKey: process.env.ANTHROPIC_API_KEY,
  baseURL: process.env.ANTHROPIC_BASE_URL,
});

// The bench counts lines with " WARNING " or " ERROR " in the server's log.
function log(level, message) {
  process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
}

// Twilio signs a websocket handshake like a webhook with no parameters:
// base64(HMAC-SHA1(auth token, url)), url being what TwiML named (ws(s)://host:port/path?query).
// Its security page advises trying the URL with and without a trailing slash.
function signed(request) {
  const given = Buffer.from(String(request.headers['x-twilio-signature'] ?? ''));
  const at = request.url.includes('?') ? request.url.indexOf('?') : request.url.length;
  const [path, query] = [request.url.slice(0, at), request.url.slice(at)];
  const toggled = path.endsWith('/') ? path.slice(0, -1) : `${path}/`;
  return Boolean(authToken) && [path, toggled].some((p) => {
    const url = `ws://${HOST}:${port}${p}${query}`;
    const expected = Buffer.from(crypto.createHmac('sha1', authToken).update(url).digest('base64'));
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}

function refuse(socket, status, reason) {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

// One call: the conversation so far and the reply in flight, if any.
function relay(ws) {
  const history = []; // {role, content}, roles alternating as Anthropic requires
  let callSid = '';
  let reply = null; // {controller: AbortController, text: what was sent}

  const send = (frame) => ws.send(JSON.stringify(frame));

  function add(role, text) {
    const last = history.at(-1);
    if (!text) return;
    if (last?.role === role) last.content += ` ${text}`;
    else history.push({ role, content: text });
  }

  // Abort the reply in flight; the history keeps what the caller heard (default: all that was sent).
  function stop(heard) {
    if (!reply) return;
    reply.controller.abort(); // closes the HTTP connection to the provider
    add('assistant', heard ?? reply.text);
    reply = null;
  }

  async function respond(current) {
    const { signal } = current.controller;
    try {
      const messages = history.map((turn) => ({ ...turn }));
      const stream = await client.messages.create(
        { model: MODEL, max_tokens: MAX_TOKENS, system: SYSTEM, messages, stream: true },
        { signal },
      );
      for await (const event of stream) {
        if (signal.aborted) return; // not one token of an interrupted reply
        if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') {
          current.text += event.delta.text;
          send({ type: 'text', token: event.delta.text, last: false });
        } else if (event.type === 'message_stop') {
          send({ type: 'text', token: '', last: true });
          add('assistant', current.text);
          reply = null;
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      log('ERROR', `call ${callSid}: the reply failed: ${error}`);
      if (reply === current) reply = null;
      send({ type: 'text', token: '', last: true });
    }
  }

  ws.on('message', (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return log('WARNING', `call ${callSid}: a frame that is not JSON`);
    }
    if (frame.type === 'setup') {
      callSid = String(frame.callSid ?? '');
    } else if (frame.type === 'prompt' && frame.last) {
      stop();
      add('user', String(frame.voicePrompt ?? ''));
      reply = { controller: new AbortController(), text: '' };
      respond(reply);
    } else if (frame.type === 'interrupt') {
      const heard = String(frame.utteranceUntilInterrupt ?? '');
      if (reply) {
        stop(heard);
      } else if (history.at(-1)?.role === 'assistant') {
        // The reply had all been sent, but the caller heard only this much of it.
        if (heard) history.at(-1).content = heard;
        else history.pop();
      }
    }
  });
  ws.on('close', () => stop());
  ws.on('error', (error) => log('WARNING', `call ${callSid}: ${error}`));
}

const wss = new WebSocketServer({ noServer: true });
const server = http.createServer((request, response) => {
  const ok = request.method === 'GET' && ['/health/', '/health'].includes(request.url);
  response.writeHead(ok ? 200 : 404, { 'Content-Type': 'text/plain' }).end(ok ? 'ok\n' : '');
});
server.on('upgrade', (request, socket, head) => {
  socket.on('error', () => socket.destroy());
  if (!RELAY_PATHS.has(request.url.split('?')[0])) return refuse(socket, 404, 'Not Found');
  if (!signed(request)) return refuse(socket, 403, 'Forbidden');
  wss.handleUpgrade(request, socket, head, relay);
});
server.listen(port, HOST, () => log('INFO', `listening on http://${HOST}:${port}`));
