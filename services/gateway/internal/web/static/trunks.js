// The trunk health page: each trunk's registration state, round-trip trend
// and flaps over the last hours (api/v1/trunks/health), kept live from the
// deltas' trunk_health rows.

import { api } from './api.js';
import { $, arr, byName, clear, clock, el, obj, parseTime, qty, setText, show, str, TECH } from './dom.js';
import { healthChart } from './chart.js';
import { isTrunk, model } from './live.js';
import { effectiveStatus, matchRegistrations, pbxConnected, regClass } from './overview.js';

const state = {
  hours: 6,
  samples: [], // {pbx, trunk, t, kind, status, cause, rttMs}
  loadedFor: 0, // hours the samples cover
  loading: false,
  error: '',
};

function sample(s) {
  return {
    pbx: str(s.pbx_id),
    trunk: str(s.trunk),
    t: parseTime(s.at),
    kind: str(s.kind),
    status: str(s.status),
    cause: str(s.cause),
    rttMs: qty(s.roundtrip_usec) / 1000,
  };
}

async function load() {
  state.loading = true;
  const hours = state.hours;
  const from = new Date(Date.now() - hours * 3600e3).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const res = await api('trunks/health', { params: { from } });
  state.loading = false;
  if (!res.ok) {
    state.error = 'Trunk health unavailable: ' + (str(res.data.message) || 'HTTP ' + res.status);
  } else {
    state.error = '';
    state.samples = arr(res.data.samples).map(obj).filter(Boolean).map(sample).filter((s) => Number.isFinite(s.t));
    state.loadedFor = hours;
  }
  renderTrunks();
}

// A live sample from a delta.
export function healthSample(s) {
  const p = sample(s);
  if (Number.isFinite(p.t)) state.samples.push(p);
}

// Does a sample's trunk name belong to the trunk endpoint named n? Round
// trips carry the endpoint's name, registration changes the registration's
// ("provider-reg" for "provider").
function belongs(sampleTrunk, n) {
  return sampleTrunk === n || (sampleTrunk.length > n.length && sampleTrunk.startsWith(n) && /[-_.:@]/.test(sampleTrunk[n.length]));
}

function trunkCard(item, from, to) {
  const { key, ep, regs, points, name, pbx } = item;
  const col = el('div', { class: 'col', data: { trunk: key } });
  const card = col.appendChild(el('div', 'card h-100 trunk-card'));
  const head = card.appendChild(el('div', 'card-header d-flex align-items-baseline flex-wrap gap-2'));
  head.appendChild(el('span', 'fw-semibold', name));
  head.appendChild(el('span', 'small text-body-secondary me-auto', [pbx, ep ? TECH[str(ep.technology)] || '' : 'registration'].filter(Boolean).join(' · ')));
  if (ep) {
    const status = effectiveStatus(ep);
    head.appendChild(el('span', { class: 'badge status-badge ' + (status === 'online' ? 'text-bg-success' : status === 'unknown' ? 'status-unknown' : 'text-bg-secondary'), data: { status } }, status.replace('_', ' ')));
  }
  for (const r of regs) {
    const st = pbxConnected(pbx) ? str(r.status) || 'unknown' : 'unknown';
    const b = head.appendChild(el('span', { class: 'badge reg-badge ' + regClass(st), data: { registration: str(r.key) } }, st));
    b.title = [str(r.key), str(r.server_uri), str(r.cause)].filter(Boolean).join('\n');
  }
  const body = card.appendChild(el('div', 'card-body'));
  const rtts = points.filter((p) => p.kind === 'roundtrip' && p.rttMs > 0);
  const flaps = points.filter((p) => p.kind === 'registration');
  const down = flaps.filter((p) => p.status.toLowerCase() !== 'registered').length;
  const contact = ep ? obj(arr(ep.contacts)[0]) || {} : {};
  const now = qty(contact.roundtrip_usec) / 1000;
  const facts = body.appendChild(el('div', 'd-flex flex-wrap gap-3 small mb-1 trunk-facts'));
  const fact = (label, value, cls) => {
    const f = facts.appendChild(el('span', 'trunk-fact'));
    f.appendChild(el('span', 'text-body-secondary', label + ' '));
    f.appendChild(el('span', 'num ' + (cls || ''), value));
  };
  fact('now', now > 0 ? now.toFixed(1) + ' ms' : '–');
  if (rtts.length) {
    const avg = rtts.reduce((a, p) => a + p.rttMs, 0) / rtts.length;
    fact('avg', avg.toFixed(1) + ' ms');
    fact('max', Math.max(...rtts.map((p) => p.rttMs)).toFixed(1) + ' ms');
  }
  fact('flaps', String(flaps.length), down ? 'text-danger fw-semibold' : '');
  if (flaps.length) {
    const last = flaps[flaps.length - 1];
    fact('last', clock(last.t) + ' ' + last.status + (last.cause ? ' (' + last.cause + ')' : ''));
  }
  body.appendChild(healthChart(points, from, to, name + ' round trip and registration, last ' + state.hours + ' h'));
  return col;
}

export function renderTrunks() {
  const box = clear($('trunk-list'));
  const to = Date.now();
  const from = to - state.hours * 3600e3;
  const inRange = state.samples.filter((s) => s.t >= from);
  const trunks = [...model.endpoints].filter(([, ep]) => isTrunk(ep));
  trunks.sort((a, b) => byName(a[0], b[0]));
  const { byTrunk, orphans } = matchRegistrations(trunks);
  const items = [];
  const used = new Set();
  for (const [k, ep] of trunks) {
    const pbx = str(ep.pbx_id);
    const n = str(ep.name);
    const regs = byTrunk.get(k) || [];
    const keys = new Set(regs.map((r) => str(r.key)));
    const points = inRange.filter((s) => s.pbx === pbx && (belongs(s.trunk, n) || keys.has(s.trunk)));
    for (const p of points) used.add(p);
    items.push({ key: k, ep, regs, points, name: n, pbx });
  }
  for (const [k, r] of orphans) {
    const pbx = str(r.pbx_id);
    const points = inRange.filter((s) => !used.has(s) && s.pbx === pbx && (s.trunk === str(r.key) || belongs(str(r.key), s.trunk)));
    for (const p of points) used.add(p);
    items.push({ key: k, ep: null, regs: [r], points, name: str(r.key), pbx });
  }
  // Samples of trunks the live view no longer has still tell their story.
  const rest = new Map();
  for (const s of inRange) {
    if (used.has(s)) continue;
    const k = s.pbx + '/' + s.trunk;
    if (!rest.has(k)) rest.set(k, { key: k, ep: null, regs: [], points: [], name: s.trunk, pbx: s.pbx });
    rest.get(k).points.push(s);
  }
  items.push(...rest.values());
  for (const it of items) it.points.sort((a, b) => a.t - b.t);
  for (const it of items) box.appendChild(trunkCard(it, from, to));
  show($('trunks-page-empty'), items.length === 0);
  const st = $('trunks-status');
  st.className = 'small ' + (state.error ? 'text-danger' : 'text-body-secondary');
  setText(st, state.error || (state.loading ? 'Loading…' : inRange.length + ' samples'));
}

export function enterTrunks() {
  if (!state.loadedFor || state.loadedFor < state.hours) load();
  else renderTrunks();
}

export function initTrunks() {
  $('trunks-hours').addEventListener('change', (ev) => {
    state.hours = Number(ev.target.value) || 6;
    if (state.loadedFor < state.hours) load();
    else renderTrunks();
  });
  $('trunks-reload').addEventListener('click', load);
}
