// The overview: PBXs, extensions, trunks and active calls, live.

import { actionButton, editConfig, hangupCall, originateFrom, spyCall, transferCall } from './actions.js';
import { can } from './api.js';
import {
  $, arr, byName, channelEndpoint, clock, el, formatDuration, obj, parseTime, qty, reconcile, routeHash, setAttr, setClass, setText, show, str, TECH,
} from './dom.js';
import { isTrunk, model, serverNow, updatedAt } from './live.js';

const PBX_CLASS = {
  connected: 'text-bg-success',
  resyncing: 'text-bg-warning',
  disconnected: 'text-bg-danger',
  unknown: 'text-bg-secondary',
};
const STATUS_CLASS = {
  online: 'text-bg-success',
  offline: 'text-bg-secondary',
  unknown: 'status-unknown',
  in_call: 'text-bg-danger',
  ringing: 'text-bg-warning',
  on_hold: 'text-bg-info',
};
const CALL_CLASS = {
  dialing: 'text-bg-info',
  ringing: 'text-bg-warning',
  up: 'text-bg-success',
  bridged: 'text-bg-success',
  on_hold: 'text-bg-info',
  transferred: 'text-bg-primary',
};
const DIRECTION = { internal: 'internal', inbound: '↘ inbound', outbound: '↗ outbound' };

export function regClass(status) {
  const s = str(status).toLowerCase();
  if (s === 'registered' || s === 'reachable') return 'text-bg-success';
  if (s === 'rejected' || s === 'failed' || s === 'unregistered' || s === 'stopped' || s === 'unreachable') return 'text-bg-danger';
  return 'text-bg-secondary';
}

export const pbxConnected = (pbxId) => {
  const p = model.pbxs.get(pbxId);
  return !!p && str(p.state) === 'connected';
};

// The status to show: the row's, unless its PBX is not connected (then we
// do not know).
export function effectiveStatus(ep) {
  if (!pbxConnected(str(ep.pbx_id))) return 'unknown';
  return str(ep.status) || 'unknown';
}

const label = (status) => status.replace('_', ' ');

// Filter and search of the toolbar.
const filter = { pbx: '', q: '' };

function matches(pbxId, texts) {
  if (filter.pbx && pbxId !== filter.pbx) return false;
  if (!filter.q) return true;
  return texts.some((t) => str(t).toLowerCase().includes(filter.q));
}

// pbx_id + "\n" + endpoint name -> [CallView] the endpoint has a channel in.
function callsByEndpoint() {
  const idx = new Map();
  for (const call of model.calls.values()) {
    const seen = new Set();
    for (const ch of arr(call.channels).map(obj)) {
      if (!ch) continue;
      const name = channelEndpoint(str(ch.name));
      if (!name || seen.has(name)) continue;
      seen.add(name);
      const k = str(call.pbx_id) + '\n' + name;
      if (!idx.has(k)) idx.set(k, []);
      idx.get(k).push(call);
    }
  }
  return idx;
}

function callsPerPbx() {
  const n = new Map();
  for (const c of model.calls.values()) n.set(str(c.pbx_id), (n.get(str(c.pbx_id)) || 0) + 1);
  return n;
}

// ------------------------------------------------------------------- PBXs

const pbxNodes = new Map();
function createPbx() {
  const root = el('button', { type: 'button', class: 'pbx' });
  root._state = root.appendChild(el('span', 'badge pbx-state'));
  root._name = root.appendChild(el('span', 'pbx-name fw-semibold'));
  root._calls = root.appendChild(el('span', 'badge pbx-calls'));
  root._detail = root.appendChild(el('span', 'pbx-detail small text-body-secondary'));
  root.addEventListener('click', () => {
    const id = root.dataset.pbx;
    setPbxFilter(filter.pbx === id ? '' : id);
  });
  return root;
}
function updatePbx(root, item) {
  const p = item.p;
  const state = str(p.state) || 'unknown';
  setAttr(root, 'data-pbx', str(p.pbx_id));
  setAttr(root, 'data-state', state);
  setAttr(root, 'aria-pressed', filter.pbx === str(p.pbx_id) ? 'true' : 'false');
  setText(root._state, state);
  setClass(root._state, 'badge pbx-state ' + (PBX_CLASS[state] || 'text-bg-secondary'));
  setText(root._name, str(p.pbx_id));
  setText(root._calls, item.calls + (item.calls === 1 ? ' call' : ' calls'));
  setClass(root._calls, 'badge pbx-calls ' + (item.calls ? 'text-bg-danger' : 'text-bg-dark'));
  const parts = [];
  if (state !== 'connected' && qty(p.attempt) > 0) parts.push('attempt ' + qty(p.attempt));
  if (str(p.detail)) parts.push(str(p.detail));
  setText(root._detail, parts.join(' · '));
  const since = parseTime(p.since);
  const tip = [];
  if (str(p.banner)) tip.push(str(p.banner));
  if (Number.isFinite(since)) tip.push(state + ' since ' + new Date(since).toLocaleString());
  if (str(p.detail)) tip.push(str(p.detail));
  tip.push('click to show only this PBX');
  setAttr(root, 'title', tip.join('\n'));
}

function renderPbxs() {
  const perPbx = callsPerPbx();
  const entries = [...model.pbxs].sort((a, b) => byName(a[0], b[0])).map(([k, p]) => [k, { p, calls: perPbx.get(k) || 0 }]);
  reconcile($('pbxs'), pbxNodes, entries, createPbx, updatePbx);
  show($('pbxs-empty'), entries.length === 0);

  // The PBX filter's options follow the PBXs.
  const sel = $('filter-pbx');
  const want = ['', ...entries.map((e) => e[0])];
  const have = [...sel.options].map((o) => o.value);
  if (want.join('\n') !== have.join('\n')) {
    while (sel.options.length) sel.remove(0);
    for (const id of want) sel.add(el('option', { value: id }, id || 'all PBXs'));
  }
  sel.value = filter.pbx;
  show(sel, entries.length > 1 || filter.pbx !== '');
}

// ------------------------------------------------------- endpoint cards

function createCard(item) {
  const col = el('div', 'col');
  const card = col.appendChild(el('div', 'card ep-card h-100'));
  const body = card.appendChild(el('div', 'card-body'));
  const head = body.appendChild(el('div', 'd-flex justify-content-between align-items-start gap-2'));
  const titles = head.appendChild(el('div', 'min-w-0'));
  col._card = card;
  col._name = titles.appendChild(el('div', 'ep-name'));
  col._sub = titles.appendChild(el('div', 'ep-line text-body-secondary'));
  const badges = head.appendChild(el('div', 'ep-badges d-flex flex-wrap justify-content-end align-items-start gap-1'));
  col._badge = badges.appendChild(el('span', 'badge status-badge'));
  col._reg = badges.appendChild(el('span', 'badge reg-badge'));
  col._count = badges.appendChild(el('span', 'badge call-count'));
  col._device = body.appendChild(el('div', 'ep-line ep-device'));
  col._regs = body.appendChild(el('div', 'ep-regs'));
  col._ua = body.appendChild(el('div', 'ep-line ep-ua text-body-secondary text-truncate'));
  col._rtt = body.appendChild(el('div', 'ep-line ep-rtt text-body-secondary'));
  col._calls = body.appendChild(el('div', 'ep-line ep-calls text-danger-emphasis fw-semibold text-truncate'));
  col._actions = body.appendChild(el('div', 'ep-actions d-flex flex-wrap gap-1 mt-1'));
  if (item.type !== 'endpoint') {
    col._device.remove();
    col._reg.remove();
    col._count.remove();
  }
  return col;
}

function otherParty(call, epName) {
  const callerNum = str(call.caller_num);
  const num = callerNum === epName ? str(call.callee_num) : callerNum;
  const name = callerNum === epName ? str(call.callee_name) : str(call.caller_name);
  return [num, name].filter(Boolean).join(' ');
}

function renderRegs(box, regs) {
  const sig = regs.map((r) => [r.key, r.status, r.server_uri, r.client_uri, r.cause].map(str).join('|')).join('\n');
  if (box._sig === sig) return;
  box._sig = sig;
  while (box.firstChild) box.firstChild.remove();
  for (const r of regs) {
    const line = box.appendChild(el('div', 'ep-line ep-reg text-truncate'));
    const status = str(r.status) || 'unknown';
    line.appendChild(el('span', 'badge reg-badge me-1 ' + regClass(status), status));
    line.appendChild(el('span', 'text-body-secondary', str(r.server_uri) || str(r.key)));
    if (str(r.cause)) line.appendChild(el('span', 'text-danger-emphasis', ' · ' + str(r.cause)));
    line.title = [str(r.key), str(r.client_uri), str(r.server_uri), str(r.cause)].filter(Boolean).join('\n');
  }
}

// A card's buttons are made once (by role) and shown or hidden as its calls
// come and go, so that a button never changes under a pointer.
function renderEndpointActions(col, ep, calls) {
  col._callsNow = calls;
  if (!col._buttons) {
    const box = col._actions;
    const b = (col._buttons = {});
    const ext = () => model.endpoints.get(col.dataset.endpoint) || ep;
    b.logs = box.appendChild(el('a', { class: 'btn btn-sm btn-outline-secondary btn-logs', href: routeHash('logs', { pbx: str(ep.pbx_id), endpoint: str(ep.name) }) }, 'Logs'));
    if (can('supervisor')) {
      b.hangup = box.appendChild(actionButton('Hang up', 'btn-outline-danger btn-hangup', () => col._callsNow[0] && hangupCall(col._callsNow[0]), 'Hang up the call of ' + str(ep.name)));
      b.spy = box.appendChild(actionButton('Spy', 'btn-outline-secondary btn-spy', () => col._callsNow[0] && spyCall(col._callsNow[0]), 'Listen to the call of ' + str(ep.name)));
      if (!isTrunk(ep)) b.call = box.appendChild(actionButton('Call', 'btn-outline-primary btn-originate', () => originateFrom(ext()), 'Click to call from ' + str(ep.name)));
    }
    if (can('admin')) b.config = box.appendChild(actionButton('Config', 'btn-outline-warning btn-config', () => editConfig(ext()), 'View and change the PJSIP section of ' + str(ep.name)));
  }
  const b = col._buttons;
  if (b.hangup) show(b.hangup, calls.length > 0);
  if (b.spy) show(b.spy, calls.length > 0);
  if (b.call) show(b.call, calls.length === 0);
}

function updateEndpointCard(col, item) {
  const ep = item.ep;
  const pbxId = str(ep.pbx_id);
  const name = str(ep.name);
  const connected = pbxConnected(pbxId);
  const status = effectiveStatus(ep);
  const calls = item.calls;
  const busy = connected && (status === 'in_call' || status === 'ringing' || status === 'on_hold' || calls.length > 0);
  const blink = !busy ? '' : status === 'ringing' ? ' ringing' : status === 'on_hold' ? ' on-hold' : ' in-call';

  setAttr(col, 'data-endpoint', pbxId + '/' + name);
  setAttr(col, 'data-status', status);
  setAttr(col, 'data-calls', String(calls.length));
  setClass(col._card, 'card ep-card h-100' + blink + (connected ? '' : ' stale'));
  setText(col._name, name);
  setText(col._sub, [pbxId, TECH[str(ep.technology)] || '', str(ep.description)].filter(Boolean).join(' · '));
  setText(col._badge, label(status)); // data-status keeps the token
  setClass(col._badge, 'badge status-badge ' + (STATUS_CLASS[status] || 'text-bg-secondary'));
  if (col._reg.isConnected || col._reg.parentNode) {
    // Extensions register; a trunk's own line is whether it answers qualify.
    let reg = connected ? str(isTrunk(ep) ? ep.reachability : ep.registration) : '';
    if (reg === 'unknown') reg = '';
    setText(col._reg, reg);
    setClass(col._reg, 'badge reg-badge ' + regClass(reg) + (reg ? '' : ' d-none'));
    setText(col._count, calls.length + (calls.length === 1 ? ' call' : ' calls'));
    setClass(col._count, 'badge call-count ' + (calls.length ? 'text-bg-danger' : 'd-none'));
  }
  if (col._device.parentNode) setText(col._device, str(ep.device_state));

  const contact = obj(arr(ep.contacts)[0]) || {};
  const ua = str(contact.user_agent) || str(ep.address);
  setText(col._ua, ua);
  setAttr(col._ua, 'title', [ua, str(contact.uri), str(contact.via_address)].filter(Boolean).join('\n'));
  const usec = qty(contact.roundtrip_usec);
  setText(col._rtt, usec > 0 ? 'RTT ' + (usec / 1000).toFixed(usec < 10000 ? 1 : 0) + ' ms' : '');

  let callsText = '';
  if (calls.length > 0) {
    const peer = otherParty(calls[0], name);
    callsText = peer ? '☎ ' + peer : '';
  } else if (connected && qty(ep.active_channels) > 0) {
    const n = qty(ep.active_channels);
    callsText = n + (n === 1 ? ' channel' : ' channels');
  }
  setText(col._calls, callsText);
  if (item.regs) renderRegs(col._regs, item.regs);
  renderEndpointActions(col, ep, calls);
}

function updateRegistrationCard(col, item) {
  const r = item.reg;
  const pbxId = str(r.pbx_id);
  const status = str(r.status) || 'unknown';
  setAttr(col, 'data-registration', pbxId + '/' + str(r.key));
  setClass(col._card, 'card ep-card h-100' + (pbxConnected(pbxId) ? '' : ' stale'));
  setText(col._name, str(r.key) || str(r.server_uri));
  setText(col._sub, pbxId + ' · registration');
  setText(col._badge, status);
  setClass(col._badge, 'badge reg-badge ' + regClass(status));
  setText(col._ua, str(r.client_uri));
  setText(col._rtt, str(r.server_uri));
  setText(col._calls, str(r.cause));
}

function updateCard(col, item) {
  if (item.type === 'endpoint') updateEndpointCard(col, item);
  else updateRegistrationCard(col, item);
}

// "sip:user@host:5060;transport=udp" -> "host:5060".
function uriHost(uri) {
  return str(uri)
    .replace(/^sips?:/i, '')
    .replace(/^[^@]*@/, '')
    .replace(/[;?].*$/, '')
    .toLowerCase();
}

// Outbound registrations belong to a trunk of the same PBX: the one named
// like their key ("acme" or "acme-reg"), else the one whose contact is the
// registrar (server_uri). The rest get a card of their own.
export function matchRegistrations(trunks) {
  const byTrunk = new Map();
  const orphans = [];
  for (const [k, r] of model.registrations) {
    const pbxId = str(r.pbx_id);
    const key = str(r.key);
    const server = uriHost(r.server_uri);
    let best = null;
    for (const [tk, ep] of trunks) {
      if (str(ep.pbx_id) !== pbxId) continue;
      const n = str(ep.name);
      if (!n) continue;
      const exact = key === n;
      const prefix = key.length > n.length && key.startsWith(n) && /[-_.:@]/.test(key[n.length]);
      if (exact || prefix) {
        if (!best || !best.named || exact || n.length > best.n.length) best = { tk, n, named: true };
        if (exact) break;
      } else if (!best && server && arr(ep.contacts).some((c) => uriHost(obj(c) && c.uri) === server)) {
        best = { tk, n, named: false };
      }
    }
    if (best) {
      if (!byTrunk.has(best.tk)) byTrunk.set(best.tk, []);
      byTrunk.get(best.tk).push(r);
    } else {
      orphans.push([k, r]);
    }
  }
  return { byTrunk, orphans };
}

const extNodes = new Map();
const trunkNodes = new Map();

function epTexts(ep) {
  const c = obj(arr(ep.contacts)[0]) || {};
  return [ep.name, ep.pbx_id, ep.status, ep.device_state, ep.description, c.user_agent, c.uri];
}

function renderEndpoints() {
  const callIdx = callsByEndpoint();
  const exts = [];
  const trunks = [];
  for (const e of model.endpoints) (isTrunk(e[1]) ? trunks : exts).push(e);
  const order = (a, b) => byName(str(a[1].pbx_id), str(b[1].pbx_id)) || byName(str(a[1].name), str(b[1].name));
  exts.sort(order);
  trunks.sort(order);
  const withCalls = (ep) => callIdx.get(str(ep.pbx_id) + '\n' + str(ep.name)) || [];

  const counts = {};
  const extEntries = [];
  for (const [k, ep] of exts) {
    const calls = withCalls(ep);
    const texts = epTexts(ep);
    for (const c of calls) texts.push(c.caller_num, c.caller_name, c.callee_num, c.callee_name);
    if (!matches(str(ep.pbx_id), texts)) continue;
    const s = effectiveStatus(ep);
    counts[s] = (counts[s] || 0) + 1;
    extEntries.push([k, { type: 'endpoint', ep, calls }]);
  }
  reconcile($('extensions'), extNodes, extEntries, createCard, updateCard);
  show($('extensions-empty'), extEntries.length === 0);
  setText(
    $('extensions-summary'),
    ['online', 'in_call', 'ringing', 'on_hold', 'offline', 'unknown']
      .filter((s) => counts[s])
      .map((s) => counts[s] + ' ' + label(s))
      .join(' · '),
  );

  const { byTrunk, orphans } = matchRegistrations(trunks);
  const trunkEntries = [];
  for (const [k, ep] of trunks) {
    const regs = byTrunk.get(k) || [];
    if (!matches(str(ep.pbx_id), [...epTexts(ep), ...regs.map((r) => r.key)])) continue;
    trunkEntries.push(['e:' + k, { type: 'endpoint', ep, calls: withCalls(ep), regs }]);
  }
  orphans.sort((a, b) => byName(a[0], b[0]));
  for (const [k, reg] of orphans) {
    if (matches(str(reg.pbx_id), [reg.key, reg.server_uri, reg.client_uri, reg.status])) trunkEntries.push(['r:' + k, { type: 'registration', reg }]);
  }
  reconcile($('trunks'), trunkNodes, trunkEntries, createCard, updateCard);
  show($('trunks-empty'), trunkEntries.length === 0);
  let registered = 0;
  for (const r of model.registrations.values()) if (str(r.status).toLowerCase() === 'registered') registered++;
  setText($('trunks-summary'), model.registrations.size ? registered + '/' + model.registrations.size + ' registered' : '');
}

// ------------------------------------------------------------------ calls

const callNodes = new Map();
const firstSeen = new Map(); // call key -> server ms, for calls without timestamps

function callStart(key, call) {
  const answered = parseTime(call.answered_at);
  if (Number.isFinite(answered)) return { ms: answered, answered: true };
  const started = parseTime(call.started_at);
  if (Number.isFinite(started)) return { ms: started, answered: false };
  if (!firstSeen.has(key)) firstSeen.set(key, serverNow());
  return { ms: firstSeen.get(key), answered: false };
}

// A call is a list item: who calls whom, state and running time on the
// first line; direction, PBX and the actions on the second. It wraps on a
// phone instead of scrolling sideways.
function createCall() {
  const li = el('li', 'list-group-item call-item px-2 py-1');
  const top = li.appendChild(el('div', 'd-flex align-items-center gap-2'));
  const parties = top.appendChild(el('div', 'd-flex align-items-center gap-2 min-w-0 flex-grow-1'));
  const caller = parties.appendChild(el('div', 'party min-w-0'));
  li._callerNum = caller.appendChild(el('span', 'caller-num num'));
  li._callerName = caller.appendChild(el('span', 'caller-name'));
  parties.appendChild(el('span', { class: 'call-arrow text-body-secondary', 'aria-hidden': 'true' }, '→'));
  const callee = parties.appendChild(el('div', 'party min-w-0'));
  li._calleeNum = callee.appendChild(el('span', 'callee-num num'));
  li._calleeName = callee.appendChild(el('span', 'callee-name'));
  li._state = top.appendChild(el('span', 'badge call-state'));
  li._duration = top.appendChild(el('span', 'call-duration num'));
  const bottom = li.appendChild(el('div', 'd-flex align-items-center flex-wrap gap-1 mt-1'));
  li._direction = bottom.appendChild(el('span', 'call-direction small text-body-secondary me-auto'));
  li._actions = bottom.appendChild(el('div', 'call-actions btn-group btn-group-sm'));
  return li;
}

function renderCallActions(li, call) {
  const sig = String(can('supervisor'));
  if (li._actionsSig === sig) return;
  li._actionsSig = sig;
  const group = li._actions;
  while (group.firstChild) group.firstChild.remove();
  const current = () => model.calls.get(li.dataset.call) || call;
  group.appendChild(el('a', { class: 'btn btn-outline-secondary btn-logs', href: routeHash('logs', { pbx: str(call.pbx_id), call: str(call.linkedid) }), title: 'Logs of this call' }, 'Logs'));
  if (!can('supervisor')) return;
  group.appendChild(actionButton('Spy', 'btn-outline-secondary btn-spy', () => spyCall(current()), 'Listen to this call'));
  group.appendChild(actionButton('Transfer', 'btn-outline-primary btn-transfer', () => transferCall(current()), 'Transfer (redirect) a channel of this call'));
  group.appendChild(actionButton('Hang up', 'btn-outline-danger btn-hangup', () => hangupCall(current()), 'Hang up this call'));
}

function updateCall(li, item) {
  const { key, call } = item;
  const state = str(call.state) || 'unknown';
  setAttr(li, 'data-linkedid', str(call.linkedid));
  setAttr(li, 'data-call', key);
  setAttr(li, 'data-state', state);
  setText(li._callerNum, str(call.caller_num));
  setText(li._callerName, str(call.caller_name));
  setText(li._calleeNum, str(call.callee_num));
  setText(li._calleeName, str(call.callee_name));
  const dir = str(call.direction);
  const where = [DIRECTION[dir] || dir];
  if (str(call.trunk)) where.push('via ' + str(call.trunk));
  if (str(call.queue)) where.push('queue ' + str(call.queue));
  if (model.pbxs.size > 1) where.push(str(call.pbx_id));
  setText(li._direction, where.filter(Boolean).join(' · '));
  setText(li._state, label(state));
  setClass(li._state, 'badge call-state ' + (CALL_CLASS[state] || 'text-bg-secondary'));
  const start = item.start;
  li._start = start.ms;
  setAttr(li._duration, 'title', (start.answered ? 'answered ' : 'since ') + clock(start.ms));
  setText(li._duration, formatDuration((serverNow() - start.ms) / 1000));
  renderCallActions(li, call);
}

function renderCalls() {
  for (const k of firstSeen.keys()) if (!model.calls.has(k)) firstSeen.delete(k);
  const entries = [];
  for (const [key, call] of model.calls) {
    const texts = [call.caller_num, call.caller_name, call.callee_num, call.callee_name, call.linkedid, call.trunk, call.queue, ...arr(call.parties)];
    if (!matches(str(call.pbx_id), texts)) continue;
    entries.push([key, { key, call, start: callStart(key, call) }]);
  }
  entries.sort((a, b) => a[1].start.ms - b[1].start.ms || byName(a[0], b[0]));
  reconcile($('calls'), callNodes, entries, createCall, updateCall);
  show($('calls-empty'), entries.length === 0);
  setText($('calls-count'), String(entries.length));
  setClass($('calls-count'), 'badge ' + (entries.length ? 'text-bg-danger' : 'text-bg-secondary'));
}

// Called every second: running durations.
export function tickOverview() {
  const now = serverNow();
  for (const li of callNodes.values()) setText(li._duration, formatDuration((now - li._start) / 1000));
}

function renderUpdated() {
  for (const s of ['pbxs', 'extensions', 'trunks', 'calls']) {
    const t = $(s + '-updated');
    const ms = updatedAt[s];
    setText(t, ms ? clock(ms) : '–');
    setAttr(t, 'datetime', ms ? new Date(ms).toISOString() : '');
  }
}

export function renderOverview() {
  renderPbxs();
  renderEndpoints();
  renderCalls();
  renderUpdated();
}

let rerender = () => {};
function setPbxFilter(id) {
  filter.pbx = id;
  rerender();
}

export function initOverview(schedule) {
  rerender = schedule;
  $('filter-pbx').addEventListener('change', (ev) => setPbxFilter(ev.target.value));
  $('search').addEventListener('input', (ev) => {
    filter.q = str(ev.target.value).trim().toLowerCase();
    schedule();
  });
}
