// The logs page: live log lines of one PBX, extension, trunk or call, from a
// subscribeLogs on the WebSocket. Filters go to the server, so that the
// backlog holds the most recent lines that match them.

import { api } from './api.js';
import { levelBars } from './chart.js';
import { $, arr, byName, clear, clock, el, obj, parseRoute, parseTime, qty, routeHash, setText, show, str } from './dom.js';
import { model, subscribeLogs, unsubscribeLogs } from './live.js';

export const LEVELS = ['ERROR', 'WARNING', 'NOTICE', 'SECURITY', 'VERBOSE', 'DTMF', 'DEBUG'];
const MAX_LINES = 3000;
const RATE_WINDOW = 60000;

const state = {
  sub: null, // subscription id
  key: '', // the filter it was made with
  counts: new Map(), // level -> lines received
  recent: [], // [ms, level] of live lines within RATE_WINDOW
  follow: true,
  unseen: 0,
  sources: new Set(),
};

function levelClass(level) {
  const l = str(level).toUpperCase();
  return 'level-' + (LEVELS.includes(l) ? l.toLowerCase() : 'other');
}

// The filter of the route: #/logs?pbx=&endpoint=&call=&channel=&level=A,B&source=&text=&backlog=
function filterOf(params) {
  const f = {};
  for (const k of ['pbx', 'endpoint', 'call', 'channel', 'source', 'text']) {
    const v = str(params.get(k)).trim();
    if (v) f[k] = v;
  }
  // A trunk is an endpoint to the log tailer.
  if (!f.endpoint && params.get('trunk')) f.endpoint = str(params.get('trunk'));
  const levels = str(params.get('level'))
    .split(',')
    .map((s) => s.trim().toUpperCase())
    .filter(Boolean);
  if (levels.length) f.level = levels;
  return f;
}

function backlogOf(params) {
  const n = parseInt(str(params.get('backlog')), 10);
  return Number.isFinite(n) && n >= 0 && n <= 1000 ? n : 200;
}

function describe(f) {
  const parts = [];
  if (f.call) parts.push('call ' + f.call);
  if (f.channel) parts.push('channel ' + f.channel);
  if (f.endpoint) parts.push('endpoint ' + f.endpoint);
  if (f.pbx) parts.push('on ' + f.pbx);
  return parts.length ? 'Logs of ' + parts.join(', ') : 'All logs';
}

// ------------------------------------------------------------------ form

function readForm() {
  const p = {};
  for (const k of ['pbx', 'endpoint', 'call', 'channel', 'source', 'text']) p[k] = str($('logs-' + k).value).trim();
  const levels = [...document.querySelectorAll('#logs-levels input:checked')].map((i) => i.value);
  if (levels.length && levels.length < LEVELS.length) p.level = levels.join(',');
  const b = $('logs-backlog').value;
  if (b !== '200') p.backlog = b;
  return p;
}

function writeForm(params) {
  for (const k of ['pbx', 'endpoint', 'call', 'channel', 'source', 'text']) {
    const e = $('logs-' + k);
    const v = k === 'endpoint' ? str(params.get('endpoint') || params.get('trunk')) : str(params.get(k));
    if (e.value !== v && document.activeElement !== e) e.value = v;
  }
  const levels = new Set(filterOf(params).level || []);
  for (const i of document.querySelectorAll('#logs-levels input')) i.checked = levels.size === 0 || levels.has(i.value);
  $('logs-backlog').value = String(backlogOf(params));
}

// Form changes go to the URL (without a history entry per keystroke) and
// from there to the subscription.
let debounce = 0;
function formChanged(delay) {
  clearTimeout(debounce);
  debounce = setTimeout(() => {
    const hash = routeHash('logs', readForm());
    if (hash !== location.hash) {
      history.replaceState(history.state, '', hash);
      enterLogs(parseRoute(hash).params);
    }
  }, delay);
}

// ------------------------------------------------------------------ lines

function lineNode(e) {
  const level = str(e.level).toUpperCase();
  const row = el('div', 'log-line ' + levelClass(level));
  row.dataset.level = level;
  if (str(e.stream_seq)) row.dataset.seq = str(e.stream_seq);
  const t = parseTime(e.pbx_time);
  row.appendChild(el('span', 'log-time', Number.isFinite(t) ? clock(t) : '        '));
  row.appendChild(el('span', 'log-level', level || '—'));
  if (model.pbxs.size > 1 || !state.filterPbx) row.appendChild(el('span', 'log-pbx', str(e.pbx_id)));
  if (str(e.call_id)) row.appendChild(el('span', 'log-callid', str(e.call_id)));
  const src = str(e.source_file);
  if (src) row.appendChild(el('span', 'log-source', src + (e.source_line ? ':' + e.source_line : '')));
  row.appendChild(el('span', 'log-msg', str(e.message)));
  const refs = obj(e.refs) || {};
  row.title = [str(e.file), str(e.function), str(refs.channel), str(refs.endpoint), str(refs.linkedid)].filter(Boolean).join('\n');
  return row;
}

function onEntries(entries, backlog) {
  const box = $('logs-lines');
  const frag = document.createDocumentFragment();
  const now = Date.now();
  for (const e of entries.map(obj)) {
    if (!e) continue;
    const level = str(e.level).toUpperCase() || '—';
    state.counts.set(level, (state.counts.get(level) || 0) + 1);
    if (!backlog) state.recent.push([now, level]);
    if (str(e.source_file)) addSource(str(e.source_file));
    frag.appendChild(lineNode(e));
  }
  box.appendChild(frag);
  let extra = box.childElementCount - MAX_LINES;
  while (extra-- > 0) box.firstElementChild.remove();
  show($('logs-empty'), box.childElementCount === 0);
  if (state.follow) box.scrollTop = box.scrollHeight;
  else state.unseen += entries.length;
  renderStats();
}

function addSource(s) {
  if (state.sources.has(s) || state.sources.size > 500) return;
  state.sources.add(s);
  const dl = $('logs-sources');
  const opts = [...state.sources].sort(byName);
  clear(dl);
  for (const o of opts) dl.appendChild(el('option', { value: o }));
}

function renderStats() {
  const now = Date.now();
  while (state.recent.length && now - state.recent[0][0] > RATE_WINDOW) state.recent.shift();
  const rate = new Map();
  for (const [, l] of state.recent) rate.set(l, (rate.get(l) || 0) + 1);
  const box = clear($('logs-stats'));
  const levels = [...state.counts.keys()].sort((a, b) => LEVELS.indexOf(a) - LEVELS.indexOf(b));
  let total = 0;
  for (const l of levels) {
    const n = state.counts.get(l);
    total += n;
    const b = box.appendChild(el('span', 'log-stat ' + levelClass(l)));
    b.dataset.level = l;
    b.appendChild(el('span', 'log-stat-level', l));
    b.appendChild(el('span', 'log-stat-count num', String(n)));
    b.appendChild(el('span', 'log-stat-rate small', (rate.get(l) || 0) + '/min'));
  }
  setText($('logs-total'), total + (total === 1 ? ' line' : ' lines'));
  const f = $('logs-follow');
  f.setAttribute('aria-pressed', String(state.follow));
  setText(f, state.follow ? 'Pause scrolling' : 'Resume scrolling' + (state.unseen ? ' (' + state.unseen + ' new)' : ''));
}

function onStatus(s) {
  const e = $('logs-status');
  e.dataset.state = s.state;
  let text = s.state;
  if (s.state === 'live') text = 'live · ' + s.backlog + ' earlier line' + (s.backlog === 1 ? '' : 's');
  if (s.state === 'waiting') text = 'waiting for the link';
  if (s.state === 'error') text = 'error: ' + (s.message || s.code);
  e.className = 'badge ' + ({ live: 'text-bg-success', error: 'text-bg-danger' }[s.state] || 'text-bg-secondary');
  setText(e, text);
}

function resetLines() {
  clear($('logs-lines'));
  state.counts.clear();
  state.recent = [];
  state.unseen = 0;
  show($('logs-empty'), true);
  renderStats();
}

// ------------------------------------------------------------ per minute

const BAR_LEVELS = ['error', 'warning', 'security', 'notice', 'verbose', 'dtmf', 'debug', 'unknown'];
const STATS_WINDOW = 3600e3;

// The log tailers' per-minute counts of the PBX (api/v1/logs/stats), as
// bars: how busy and how troubled the PBX's log has been this last hour. A
// PBX's files overlap (messages repeats lines of full), so each PBX counts
// with its busiest file only.
async function loadMinutes() {
  const pbx = state.filterPbx;
  const to = Date.now();
  const from = to - STATS_WINDOW;
  const res = await api('logs/stats', { params: { pbx, from: new Date(from).toISOString().replace(/\.\d{3}Z$/, 'Z') } });
  const box = $('logs-minutes');
  if (!res.ok || pbx !== state.filterPbx) {
    if (!res.ok) show(box, false);
    return;
  }
  const rows = arr(res.data.minutes).map(obj).filter(Boolean);
  const perFile = new Map(); // pbx -> file -> total
  for (const r of rows) {
    const p = str(r.pbx_id);
    if (!perFile.has(p)) perFile.set(p, new Map());
    const f = perFile.get(p);
    f.set(str(r.file), (f.get(str(r.file)) || 0) + qty(r.total));
  }
  const busiest = new Map();
  for (const [p, files] of perFile) busiest.set(p, [...files].sort((a, b) => b[1] - a[1])[0][0]);
  const minutes = new Map(); // minute ms -> {t, levels}
  for (const r of rows) {
    if (busiest.get(str(r.pbx_id)) !== str(r.file)) continue;
    const t = parseTime(r.minute);
    if (!Number.isFinite(t)) continue;
    if (!minutes.has(t)) minutes.set(t, { t, levels: {} });
    const m = minutes.get(t);
    for (const [l, n] of Object.entries(obj(r.levels) || {})) {
      const k = BAR_LEVELS.includes(l.toLowerCase()) ? l.toLowerCase() : 'unknown';
      m.levels[k] = (m.levels[k] || 0) + qty(n);
    }
  }
  clear(box);
  box.appendChild(levelBars([...minutes.values()], from, to, BAR_LEVELS, 'Log entries per minute by level, last hour' + (pbx ? ', ' + pbx : '')));
  show(box, true);
}

// ------------------------------------------------------------------ page

// enterLogs (re)subscribes when the route's filter changed.
export function enterLogs(params) {
  writeForm(params);
  fillPbxOptions();
  const f = filterOf(params);
  const backlog = backlogOf(params);
  const key = JSON.stringify([f, backlog]);
  setText($('logs-title'), describe(f));
  if (state.sub && key === state.key) return;
  leaveLogs();
  resetLines();
  state.key = key;
  const pbxChanged = state.filterPbx !== (f.pbx || '') || !state.minutesLoaded;
  state.filterPbx = f.pbx || '';
  state.sub = subscribeLogs(f, backlog, onEntries, onStatus);
  if (pbxChanged) {
    state.minutesLoaded = true;
    loadMinutes();
  }
}

export function leaveLogs() {
  if (state.sub) unsubscribeLogs(state.sub);
  state.sub = null;
  state.key = '';
  state.minutesLoaded = false;
}

function fillPbxOptions() {
  const sel = $('logs-pbx');
  const want = ['', ...[...model.pbxs.keys()].sort(byName)];
  const cur = sel.value;
  if ([...sel.options].map((o) => o.value).join('\n') === want.join('\n')) return;
  clear(sel);
  for (const id of want) sel.add(el('option', { value: id }, id || 'all PBXs'));
  if (!want.includes(cur) && cur) sel.add(el('option', { value: cur }, cur));
  sel.value = cur;
}

export function renderLogs() {
  fillPbxOptions();
}

export function initLogs() {
  const levels = $('logs-levels');
  for (const l of LEVELS) {
    const id = 'lvl-' + l.toLowerCase();
    const w = levels.appendChild(el('div', 'form-check form-check-inline me-2'));
    w.appendChild(el('input', { class: 'form-check-input', type: 'checkbox', id, value: l, checked: true }));
    w.appendChild(el('label', { class: 'form-check-label small ' + levelClass(l), for: id }, l));
  }
  levels.addEventListener('change', () => formChanged(0));
  for (const k of ['pbx', 'backlog']) $('logs-' + k).addEventListener('change', () => formChanged(0));
  for (const k of ['endpoint', 'call', 'channel', 'source', 'text']) $('logs-' + k).addEventListener('input', () => formChanged(400));
  $('logs-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    formChanged(0);
  });
  $('logs-follow').addEventListener('click', () => {
    state.follow = !state.follow;
    if (state.follow) {
      state.unseen = 0;
      const box = $('logs-lines');
      box.scrollTop = box.scrollHeight;
    }
    renderStats();
  });
  $('logs-clear').addEventListener('click', resetLines);
  // Scrolling up pauses following; back at the bottom resumes it.
  $('logs-lines').addEventListener('scroll', () => {
    const box = $('logs-lines');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    if (atBottom && !state.follow && state.unseen) {
      state.unseen = 0;
      renderStats();
    }
  });
  setInterval(() => {
    if (state.sub) renderStats();
  }, 5000);
  setInterval(() => {
    if (state.sub) loadMinutes();
  }, 60000);
}
