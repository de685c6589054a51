// The queues page: callers waiting (with their running wait), agents with
// their state and pause reason, and today's service level.

import { $, arr, byName, clear, clock, el, formatDuration, obj, parseTime, qty, reconcile, setAttr, setClass, setText, show, str } from './dom.js';
import { model, serverNow, updatedAt } from './live.js';
import { pbxConnected } from './overview.js';

function memberClass(m) {
  if (m.paused) return 'text-bg-warning';
  if (m.in_call) return 'text-bg-danger';
  const s = str(m.state).toLowerCase();
  if (s.includes('ring')) return 'text-bg-warning';
  if (s.includes('not in use') || s === 'idle' || s === 'available') return 'text-bg-success';
  if (s.includes('in use') || s.includes('busy')) return 'text-bg-danger';
  if (s.includes('unavailable') || s.includes('invalid')) return 'text-bg-secondary';
  return 'text-bg-secondary';
}

function memberState(m) {
  if (m.paused) return 'paused';
  if (m.in_call) return 'in call';
  return str(m.state).toLowerCase() || 'unknown';
}

function slClass(pct, total) {
  if (!total) return 'text-body-secondary';
  if (pct >= 80) return 'text-success';
  if (pct >= 60) return 'text-warning';
  return 'text-danger';
}

const nodes = new Map();

function stat(parent, label, cls) {
  const box = parent.appendChild(el('div', 'col queue-stat'));
  const v = box.appendChild(el('div', 'queue-stat-value num ' + (cls || '')));
  box.appendChild(el('div', 'queue-stat-label small text-body-secondary', label));
  return v;
}

function createQueue() {
  const col = el('div', 'col');
  const card = col.appendChild(el('div', 'card h-100 queue-card'));
  const head = card.appendChild(el('div', 'card-header d-flex align-items-baseline gap-2'));
  col._name = head.appendChild(el('span', 'fw-semibold queue-name'));
  col._sub = head.appendChild(el('span', 'small text-body-secondary me-auto'));
  col._waiting = head.appendChild(el('span', 'badge queue-waiting'));
  const body = card.appendChild(el('div', 'card-body'));
  const stats = body.appendChild(el('div', 'row row-cols-4 g-1 text-center mb-2'));
  col._sl = stat(stats, 'service level');
  col._answered = stat(stats, 'answered');
  col._abandoned = stat(stats, 'abandoned');
  col._avail = stat(stats, 'agents free');
  body.appendChild(el('h3', 'h6 small text-uppercase text-body-secondary mb-1', 'Waiting'));
  const ct = body.appendChild(el('table', 'table table-sm align-middle mb-2 queue-callers'));
  col._callers = ct.appendChild(el('tbody'));
  col._noCallers = body.appendChild(el('div', 'small text-body-secondary mb-2', 'Nobody is waiting.'));
  body.appendChild(el('h3', 'h6 small text-uppercase text-body-secondary mb-1', 'Agents'));
  const mt = body.appendChild(el('table', 'table table-sm align-middle mb-0 queue-members'));
  col._members = mt.appendChild(el('tbody'));
  col._callerNodes = new Map();
  return col;
}

function createCaller() {
  const tr = el('tr', 'queue-caller');
  tr._pos = tr.appendChild(el('td', 'num text-body-secondary'));
  const who = tr.appendChild(el('td'));
  tr._num = who.appendChild(el('span', 'num me-1 caller-num'));
  tr._name = who.appendChild(el('span', 'small text-body-secondary caller-name'));
  tr._wait = tr.appendChild(el('td', 'num text-end queue-wait'));
  return tr;
}

function updateCaller(tr, c) {
  setAttr(tr, 'data-uniqueid', str(c.uniqueid));
  setText(tr._pos, String(qty(c.position) || ''));
  setText(tr._num, str(c.caller_num));
  setText(tr._name, str(c.caller_name));
  const joined = parseTime(c.joined_at);
  tr._joined = Number.isFinite(joined) ? joined : NaN;
  setAttr(tr._wait, 'title', Number.isFinite(joined) ? 'waiting since ' + clock(joined) : '');
  setText(tr._wait, Number.isFinite(joined) ? formatDuration((serverNow() - joined) / 1000) : '');
}

function renderMembers(tbody, members) {
  clear(tbody);
  for (const m of members) {
    const tr = tbody.appendChild(el('tr', { class: 'queue-member', data: { member: str(m.name) || str(m.interface) } }));
    const who = tr.appendChild(el('td'));
    who.appendChild(el('div', 'fw-semibold member-name', str(m.name) || str(m.interface)));
    if (str(m.name) && str(m.interface) && str(m.name) !== str(m.interface)) who.appendChild(el('div', 'small text-body-secondary', str(m.interface)));
    const st = tr.appendChild(el('td'));
    st.appendChild(el('span', 'badge member-state ' + memberClass(m), memberState(m)));
    if (m.paused && str(m.paused_reason)) st.appendChild(el('div', 'small text-warning-emphasis pause-reason', str(m.paused_reason)));
    const taken = qty(m.calls_taken);
    tr.appendChild(el('td', 'small text-end text-body-secondary', taken + (taken === 1 ? ' call' : ' calls')));
    const last = qty(m.last_call);
    tr.appendChild(el('td', 'small text-end text-body-secondary d-none d-sm-table-cell', last > 0 ? 'last ' + clock(last * 1000) : ''));
  }
}

function updateQueue(col, q) {
  const pbx = str(q.pbx_id);
  const name = str(q.queue) || str(q.name);
  setAttr(col, 'data-queue', pbx + '/' + name);
  setText(col._name, name);
  setText(col._sub, [pbx, str(q.strategy)].filter(Boolean).join(' · ') + (pbxConnected(pbx) ? '' : ' · PBX not connected'));
  const callers = arr(q.callers).map(obj).filter(Boolean);
  callers.sort((a, b) => qty(a.position) - qty(b.position));
  setText(col._waiting, callers.length + ' waiting');
  setClass(col._waiting, 'badge queue-waiting ' + (callers.length ? 'text-bg-warning' : 'text-bg-secondary'));
  const answered = qty(q.answered_today);
  const abandoned = qty(q.abandoned_today);
  const pct = qty(q.service_level_pct);
  setText(col._sl, answered + abandoned ? pct.toFixed(0) + '%' : '–');
  setClass(col._sl, 'queue-stat-value num ' + slClass(pct, answered + abandoned));
  setAttr(col._sl, 'title', 'answered within ' + qty(q.service_level_seconds) + ' s today' + (str(q.day) ? ' (' + str(q.day) + ')' : ''));
  setText(col._answered, String(answered));
  setText(col._abandoned, String(abandoned));
  setClass(col._abandoned, 'queue-stat-value num ' + (abandoned ? 'text-danger' : ''));
  const members = arr(q.members).map(obj).filter(Boolean);
  members.sort((a, b) => byName(str(a.name) || str(a.interface), str(b.name) || str(b.interface)));
  const free = members.filter((m) => !m.paused && !m.in_call && memberClass(m) === 'text-bg-success').length;
  setText(col._avail, free + '/' + members.length);
  reconcile(col._callers, col._callerNodes, callers.map((c) => [str(c.uniqueid) || str(c.channel), c]), createCaller, updateCaller);
  show(col._noCallers, callers.length === 0);
  renderMembers(col._members, members);
}

export function renderQueues() {
  const entries = [...model.queues].sort((a, b) => byName(a[0], b[0]));
  reconcile($('queues'), nodes, entries, createQueue, updateQueue);
  show($('queues-empty'), entries.length === 0);
  const ms = updatedAt.queues;
  setText($('queues-updated'), ms ? clock(ms) : '–');
}

// Called every second: running waits.
export function tickQueues() {
  const now = serverNow();
  for (const col of nodes.values()) {
    for (const tr of col._callerNodes.values()) if (Number.isFinite(tr._joined)) setText(tr._wait, formatDuration((now - tr._joined) / 1000));
  }
}
