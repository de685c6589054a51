// The call history page: search finished calls (api/v1/history), page
// through them with the server's cursor, and export them as CSV.

import { api, apiURL, headers, saveBlob } from './api.js';
import { $, arr, byName, clear, dateTime, el, formatDuration, obj, parseTime, routeHash, setText, show, str } from './dom.js';
import { model } from './live.js';

const DISPOSITION_CLASS = {
  answered: 'text-bg-success',
  no_answer: 'text-bg-warning',
  busy: 'text-bg-warning',
  failed: 'text-bg-danger',
  cancelled: 'text-bg-secondary',
};

const state = {
  cursors: [''], // cursor of each page shown so far; the last is the current one
  next: '',
  query: null,
  loading: null, // AbortController of the request in flight
  newCalls: 0,
};

// datetime-local value -> RFC 3339 in UTC, "" when empty.
function rfc3339(v) {
  if (!v) return '';
  const t = new Date(v);
  if (Number.isNaN(t.getTime())) return null;
  return t.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function readQuery() {
  const from = rfc3339($('h-from').value);
  const to = rfc3339($('h-to').value);
  if (from === null || to === null) return 'Enter a valid date and time.';
  if (from && to && from > to) return '"From" is after "to".';
  return {
    from,
    to,
    pbx: $('h-pbx').value,
    extension: $('h-extension').value.trim(),
    number: $('h-number').value.trim(),
    disposition: $('h-disposition').value,
    limit: $('h-limit').value,
  };
}

function setStatus(text, error) {
  const e = $('h-status');
  e.className = 'small ' + (error ? 'text-danger' : 'text-body-secondary');
  setText(e, text);
}

async function load() {
  if (state.loading) state.loading.abort();
  const ctl = new AbortController();
  state.loading = ctl;
  const cursor = state.cursors[state.cursors.length - 1];
  setStatus('Searching…');
  let res;
  try {
    res = await api('history', { params: Object.assign({}, state.query, { cursor }), signal: ctl.signal });
  } catch (e) {
    return; // superseded
  }
  if (state.loading !== ctl) return;
  state.loading = null;
  if (!res.ok) {
    setStatus('Search failed: ' + (str(res.data.message) || str(res.data.error) || 'HTTP ' + res.status), true);
    return;
  }
  const records = arr(res.data.records).map(obj).filter(Boolean);
  state.next = str(res.data.next_cursor) || str(res.data.next);
  renderRows(records);
  const page = state.cursors.length;
  setStatus(records.length ? 'Page ' + page + ' · ' + records.length + ' call' + (records.length === 1 ? '' : 's') + (state.next ? '' : ' · end') : page > 1 ? 'No more calls.' : 'No call matches.');
  $('h-prev').disabled = page <= 1;
  $('h-next').disabled = !state.next;
  if (page === 1) {
    state.newCalls = 0;
    renderNew();
  }
}

function party(num, name) {
  const td = el('td');
  td.appendChild(el('span', 'num d-block', str(num)));
  if (str(name)) td.appendChild(el('span', 'party-name', str(name)));
  return td;
}

function renderRows(records) {
  const body = clear($('h-rows'));
  show($('h-empty'), records.length === 0);
  for (const r of records) {
    const tr = body.appendChild(el('tr', { data: { linkedid: str(r.linkedid), pbx: str(r.pbx_id) } }));
    const started = parseTime(r.started_at);
    tr.appendChild(el('td', 'num text-nowrap', dateTime(started)));
    tr.appendChild(party(r.caller_num, r.caller_name));
    tr.appendChild(party(r.callee_num, r.callee_name));
    tr.appendChild(el('td', 'small d-none d-lg-table-cell', [str(r.direction), str(r.trunk), str(r.queue) ? 'queue ' + str(r.queue) : ''].filter(Boolean).join(' · ')));
    const disp = str(r.disposition);
    tr.appendChild(el('td')).appendChild(el('span', { class: 'badge disposition ' + (DISPOSITION_CLASS[disp] || 'text-bg-secondary') }, disp.replace('_', ' ')));
    tr.appendChild(el('td', 'num text-end d-none d-md-table-cell', formatDuration(Number(r.ring_seconds) || 0)));
    tr.appendChild(el('td', 'num text-end', formatDuration(Number(r.talk_seconds) || 0)));
    const cause = [str(r.hangup_by) ? 'by ' + str(r.hangup_by) : '', str(r.hangup_cause_text) || (r.hangup_cause ? 'cause ' + r.hangup_cause : '')].filter(Boolean).join(' · ');
    tr.appendChild(el('td', 'small d-none d-xl-table-cell', cause));
    tr.appendChild(el('td', 'small d-none d-md-table-cell', str(r.pbx_id)));
    const a = tr.appendChild(el('td', 'text-end'));
    a.appendChild(el('a', { class: 'btn btn-sm btn-outline-secondary', href: routeHash('logs', { pbx: str(r.pbx_id), call: str(r.linkedid) }), title: 'Logs of this call' }, 'Logs'));
  }
}

function search() {
  const q = readQuery();
  if (typeof q === 'string') {
    setStatus(q, true);
    return;
  }
  state.query = q;
  state.cursors = [''];
  load();
}

// Every page of the search as one CSV file: the pages are fetched with the
// bearer header (a plain link could not carry it) and joined.
async function exportCSV() {
  const q = readQuery();
  if (typeof q === 'string') {
    setStatus(q, true);
    return;
  }
  const btn = $('h-csv');
  btn.disabled = true;
  const parts = [];
  let cursor = '';
  let rows = 0;
  try {
    for (let page = 0; page < 100; page++) {
      setStatus('Exporting… ' + rows + ' calls');
      const res = await fetch(apiURL('history', Object.assign({}, q, { limit: 1000, cursor, format: 'csv' })), { headers: headers(), cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      let text = await res.text();
      if (page > 0) text = text.slice(text.indexOf('\n') + 1); // one header row
      parts.push(text);
      rows += Math.max(0, text.split('\n').filter(Boolean).length - (page === 0 ? 1 : 0));
      cursor = res.headers.get('X-Next-Cursor') || '';
      if (!cursor) break;
    }
    saveBlob(new Blob(parts, { type: 'text/csv;charset=utf-8' }), 'call-history.csv');
    setStatus('Exported ' + rows + ' call' + (rows === 1 ? '' : 's') + ' to call-history.csv.');
  } catch (e) {
    setStatus('Export failed: ' + e.message, true);
  } finally {
    btn.disabled = false;
  }
}

function renderNew() {
  const b = $('h-new');
  setText(b, state.newCalls + ' new call' + (state.newCalls === 1 ? '' : 's') + ' — refresh');
  show(b, state.newCalls > 0);
}

// A call ended (a history row in a delta): offer to refresh.
export function historyChanged() {
  state.newCalls++;
  renderNew();
}

export function enterHistory(params) {
  fillPbxOptions();
  // Links may preset a search: #/history?extension=1001
  let preset = false;
  for (const k of ['pbx', 'extension', 'number', 'disposition']) {
    if (params.has(k)) {
      $('h-' + k).value = str(params.get(k));
      preset = true;
    }
  }
  if (preset || !state.query) search();
}

function fillPbxOptions() {
  const sel = $('h-pbx');
  const cur = sel.value;
  const want = ['', ...[...model.pbxs.keys()].sort(byName)];
  if ([...sel.options].map((o) => o.value).join('\n') === want.join('\n')) return;
  clear(sel);
  for (const id of want) sel.add(el('option', { value: id }, id || 'all PBXs'));
  sel.value = want.includes(cur) ? cur : '';
}

export function renderHistory() {
  fillPbxOptions();
}

export function initHistory() {
  $('h-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    search();
  });
  $('h-next').addEventListener('click', () => {
    if (!state.next) return;
    state.cursors.push(state.next);
    load();
  });
  $('h-prev').addEventListener('click', () => {
    if (state.cursors.length <= 1) return;
    state.cursors.pop();
    load();
  });
  $('h-csv').addEventListener('click', exportCSV);
  $('h-new').addEventListener('click', () => {
    state.cursors = [''];
    if (state.query) load();
    else search();
  });
}
