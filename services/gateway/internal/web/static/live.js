// The live link: one WebSocket to the gateway ("ws" next to the page, so the
// panel works under any path prefix), the tenant's views kept up to date
// from a snapshot and consecutive deltas, and log subscriptions.
//
// On reconnection the last version is offered (ws?since=N): the gateway
// either resumes (every delta after N follows) or sends a fresh snapshot.

import { auth } from './api.js';
import { arr, obj, parseTime, str } from './dom.js';

export const model = {
  tenant: '',
  version: null, // BigInt once a snapshot arrived
  pbxs: new Map(), // pbx_id -> PbxView
  endpoints: new Map(), // pbx_id/name -> EndpointView
  calls: new Map(), // pbx_id/linkedid -> CallView
  registrations: new Map(), // pbx_id/key -> TrunkRegistrationView
  queues: new Map(), // pbx_id/queue -> QueueView
};

// Local time of the last change of each overview section.
export const updatedAt = { pbxs: 0, extensions: 0, trunks: 0, calls: 0, queues: 0 };

export const pbxKey = (r) => str(r.pbx_id);
export const endpointKey = (r) => str(r.pbx_id) + '/' + str(r.name);
export const callKey = (r) => str(r.pbx_id) + '/' + str(r.linkedid);
export const regKey = (r) => str(r.pbx_id) + '/' + str(r.key);
export const queueKey = (r) => str(r.pbx_id) + '/' + (str(r.queue) || str(r.name));
export const isTrunk = (ep) => str(ep.kind) === 'ENDPOINT_KIND_TRUNK';

// ------------------------------------------------------------------ events

const listeners = { change: [], link: [], history: [], health: [], error: [] };

// on("change" | "link" | "history" | "health" | "error", fn)
export function on(event, fn) {
  listeners[event].push(fn);
}
function emit(event, arg) {
  for (const fn of listeners[event]) {
    try {
      fn(arg);
    } catch (e) {
      console.error(e);
    }
  }
}

// ------------------------------------------------------------------ clock

// Server clock minus local clock, from deltas' committed_at (the smallest
// recent sample: network and commit latency only add to it).
const skewSamples = [];
let skew = 0;
function sampleSkew(committedAt) {
  const t = parseTime(committedAt);
  if (!Number.isFinite(t)) return;
  skewSamples.push(Date.now() - t);
  if (skewSamples.length > 20) skewSamples.shift();
  skew = Math.min(...skewSamples);
}
export const serverNow = () => Date.now() - skew;

// ------------------------------------------------------------------ model

function parseVersion(v) {
  const s = str(v) || '0';
  return /^\d+$/.test(s) ? BigInt(s) : null;
}

function putEndpoint(ep, now) {
  const key = endpointKey(ep);
  const old = model.endpoints.get(key);
  if (old && isTrunk(old) !== isTrunk(ep)) updatedAt[isTrunk(old) ? 'trunks' : 'extensions'] = now;
  model.endpoints.set(key, ep);
  updatedAt[isTrunk(ep) ? 'trunks' : 'extensions'] = now;
}

function applySnapshot(data) {
  const version = parseVersion(data.version);
  if (version === null) return false;
  const now = Date.now();
  model.tenant = str(data.tenant);
  model.version = version;
  const fill = (map, rows, key) => {
    map.clear();
    for (const r of arr(rows).map(obj)) if (r) map.set(key(r), r);
  };
  fill(model.pbxs, data.pbxs, pbxKey);
  fill(model.endpoints, data.endpoints, endpointKey);
  fill(model.calls, data.calls, callKey);
  fill(model.registrations, data.registrations, regKey);
  fill(model.queues, data.queues, queueKey);
  for (const s of Object.keys(updatedAt)) updatedAt[s] = now;
  return true;
}

// Applies a delta; false when it is not the next version (then resync).
function applyDelta(data) {
  if (model.version === null) return false;
  const version = parseVersion(data.version);
  if (version === null || version !== model.version + 1n) return false;
  const now = Date.now();
  for (const c of arr(data.changes).map(obj)) {
    if (!c) continue;
    let r;
    if ((r = obj(c.pbx))) {
      model.pbxs.set(pbxKey(r), r);
      updatedAt.pbxs = now;
    } else if ((r = obj(c.endpoint))) {
      putEndpoint(r, now);
    } else if ((r = obj(c.call))) {
      model.calls.set(callKey(r), r);
      updatedAt.calls = now;
    } else if ((r = obj(c.registration))) {
      model.registrations.set(regKey(r), r);
      updatedAt.trunks = now;
    } else if ((r = obj(c.call_removed))) {
      model.calls.delete(callKey(r));
      updatedAt.calls = now;
    } else if ((r = obj(c.queue))) {
      model.queues.set(queueKey(r), r);
      updatedAt.queues = now;
    } else if ((r = obj(c.history))) {
      emit('history', r);
    } else if ((r = obj(c.trunk_health))) {
      emit('health', r);
    }
  }
  model.version = version;
  sampleSkew(data.committed_at);
  return true;
}

// ------------------------------------------------------------- connection

let ws = null;
let started = false;
export const link = {
  state: 'connecting', // connecting, connected, reconnecting, offline
  attempt: 0, // reconnect attempts since the last good connection
  resumed: false, // the last connection resumed from our version
};
let retryTimer = 0;
let pingTimer = 0;
let lastMessage = 0;

function setLink(state) {
  link.state = state;
  emit('link', link);
}

function wsURL() {
  let u = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + location.pathname.replace(/[^/]*$/, '') + 'ws';
  if (model.version !== null) u += '?since=' + model.version.toString();
  return u;
}

// Browsers cannot set headers on a WebSocket: the token travels as a second
// offered subprotocol ("bearer.<token>"); the gateway selects pbxpulse.v1.
function openSocket() {
  const url = wsURL();
  if (!auth.token) return new WebSocket(url, ['pbxpulse.v1']);
  try {
    return new WebSocket(url, ['pbxpulse.v1', 'bearer.' + auth.token]);
  } catch (e) {
    // A static token with characters a subprotocol cannot carry: fall back
    // to the query (the contract's last resort).
    return new WebSocket(url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(auth.token), ['pbxpulse.v1']);
  }
}

export function start() {
  if (started) return;
  started = true;
  connect();
  // The server pings at the protocol level, which scripts cannot see; a
  // ping of our own finds a dead link through proxies that keep TCP open.
  pingTimer = setInterval(() => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - lastMessage > 45000) {
      drop(ws, 4001, 'no answer');
      return;
    }
    send({ type: 'ping' });
  }, 20000);
}

export function stop() {
  started = false;
  clearInterval(pingTimer);
  clearTimeout(retryTimer);
  retryTimer = 0;
  const sock = ws;
  ws = null;
  if (sock) sock.close(1000, 'signed out');
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = 0;
  if (!started) return;
  let sock;
  try {
    sock = openSocket();
  } catch (e) {
    ws = null;
    scheduleReconnect();
    return;
  }
  ws = sock;
  lastMessage = Date.now();
  if (link.state !== 'reconnecting' && link.state !== 'offline') setLink('connecting');
  sock.onopen = () => {
    if (sock === ws) resubscribeLogs();
  };
  sock.onmessage = (ev) => onMessage(sock, ev);
  sock.onclose = (ev) => onClosed(sock, ev);
  sock.onerror = () => onClosed(sock, null);
}

function onClosed(sock, ev) {
  if (sock !== ws) return; // an old socket, already handled
  ws = null;
  try {
    sock.close();
  } catch (e) {
    /* already closing */
  }
  if (ev && ev.code === 1008) emit('error', { code: 'closed', message: 'the gateway closed the link: ' + (ev.reason || 'policy violation') });
  scheduleReconnect();
}

// 0.5 s doubling to 15 s, ±25 % jitter.
function scheduleReconnect() {
  if (retryTimer || !started) return;
  link.attempt++;
  const base = Math.min(15000, 500 * 2 ** Math.min(link.attempt - 1, 10));
  const delay = Math.round(base * (0.75 + Math.random() * 0.5));
  setLink(navigator.onLine === false ? 'offline' : 'reconnecting');
  retryTimer = setTimeout(connect, delay);
}

function drop(sock, code, reason) {
  try {
    sock.close(code, reason);
  } catch (e) {
    /* ignore */
  }
  onClosed(sock, null);
}

// Forgets the version and starts again from a fresh snapshot.
function resync() {
  model.version = null;
  if (ws) drop(ws, 4000, 'resync');
}

export function requestUpdate() {
  send({ type: 'requestUpdate' });
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(msg));
    return true;
  }
  return false;
}

function connected(resumed) {
  link.attempt = 0;
  link.resumed = resumed;
  setLink('connected');
}

function onMessage(sock, ev) {
  if (sock !== ws || typeof ev.data !== 'string') return;
  lastMessage = Date.now();
  let msg;
  try {
    msg = JSON.parse(ev.data);
  } catch (e) {
    resync(); // a lost delta cannot be told from a garbled one
    return;
  }
  msg = obj(msg) || {};
  const data = obj(msg.data) || {};
  switch (msg.type) {
    case 'snapshot':
      if (!applySnapshot(data)) {
        resync();
        return;
      }
      connected(false);
      emit('change');
      break;
    case 'resumed':
      if (model.version === null || parseVersion(data.version) !== model.version) {
        resync();
        return;
      }
      connected(true);
      emit('change');
      break;
    case 'delta':
      if (data.rebuilt) {
        // The projection was rebuilt: what we hold is void. The server
        // closes; reconnect without a version for a fresh snapshot.
        resync();
        return;
      }
      if (!applyDelta(data)) {
        resync();
        return;
      }
      emit('change');
      break;
    case 'logs':
      onLogs(msg, data);
      break;
    case 'logsSubscribed':
      onLogsSubscribed(msg, data);
      break;
    case 'error':
      onError(msg);
      break;
    case 'pong':
      break;
    default:
    // Unknown message types are ignored (a newer server).
  }
}

window.addEventListener('online', () => {
  if (!ws && started) connect();
});
window.addEventListener('offline', () => {
  if (link.state !== 'connected') setLink('offline');
});

// -------------------------------------------------------- log subscriptions

// id -> {filter, backlog, onEntries(entries, backlog), onStatus(status),
//        lastSeq, lastCount, skip}
// lastSeq is the stream_seq of the last entry delivered and lastCount how
// many delivered entries carried it; skip ({seq, left} or null) is what a
// re-subscription's backlog repeats (see onLogs).
const subs = new Map();
let subSeq = 0;

// Subscribes to log entries matching filter (see the contract's
// subscribeLogs). Entries already delivered are not repeated after a
// reconnection (stream_seq). Returns the subscription id.
export function subscribeLogs(filter, backlog, onEntries, onStatus) {
  const id = 'l' + ++subSeq;
  subs.set(id, {
    filter,
    backlog,
    onEntries,
    onStatus: onStatus || (() => {}),
    lastSeq: 0,
    lastCount: 0,
    skip: null,
  });
  sendSubscribe(id);
  return id;
}

export function unsubscribeLogs(id) {
  if (!subs.delete(id)) return;
  send({ type: 'unsubscribeLogs', id });
}

function sendSubscribe(id) {
  const s = subs.get(id);
  if (!s) return;
  if (send({ type: 'subscribeLogs', id, filter: s.filter, backlog: s.backlog })) s.onStatus({ state: 'subscribing' });
  else s.onStatus({ state: 'waiting' });
}

// resubscribeLogs subscribes again on a new connection. The backlog the
// server then sends overlaps what was already shown: remember where the
// display stands so that onLogs skips it.
function resubscribeLogs() {
  for (const [id, s] of subs) {
    s.skip = s.lastSeq > 0 ? { seq: s.lastSeq, left: s.lastCount } : null;
    sendSubscribe(id);
  }
}

function onLogs(msg, data) {
  const s = subs.get(str(msg.id));
  if (!s) return;
  const fresh = [];
  for (const e of arr(data.entries).map(obj)) {
    if (!e) continue;
    const seq = Number(str(e.stream_seq));
    if (Number.isFinite(seq) && seq > 0) {
      // Entries arrive in order, but stream_seq is that of the stream
      // message carrying them, and one message (a LogBatch) carries several
      // lines: equal seqs are distinct lines, so within a subscription
      // everything is taken. Only after a re-subscription are the entries
      // already shown skipped: those before the last seq shown, and as many
      // of that seq as were shown.
      if (s.skip) {
        if (seq < s.skip.seq) continue;
        if (seq === s.skip.seq && s.skip.left > 0) {
          s.skip.left--;
          continue;
        }
        s.skip = null; // past what was shown
      }
      if (seq === s.lastSeq) s.lastCount++;
      else {
        s.lastSeq = seq;
        s.lastCount = 1;
      }
    }
    fresh.push(e);
  }
  if (fresh.length) s.onEntries(fresh, !!msg.backlog);
}

function onLogsSubscribed(msg, data) {
  const s = subs.get(str(msg.id));
  if (s) s.onStatus({ state: 'live', backlog: Number(str(data.backlog)) || 0 });
}

function onError(msg) {
  const id = str(msg.id);
  const s = id && subs.get(id);
  if (s) {
    s.onStatus({ state: 'error', code: str(msg.code), message: str(msg.message) });
    return;
  }
  emit('error', { code: str(msg.code), message: str(msg.message) || 'error' });
}

// Debugging and tests: window.pbxpulse.
window.pbxpulse = {
  model,
  link,
  get version() {
    return model.version === null ? null : model.version.toString();
  },
  get subscriptions() {
    return [...subs.keys()];
  },
};
