// pbxpulse live supervisor panel.
//
// Connects to the gateway's WebSocket ("ws" next to this page, so the panel
// works under any path prefix), receives a snapshot and then consecutive
// deltas (protojson, snake_case) and keeps the page up to date.
//
// Every string from the server is untrusted (caller-ID comes from SIP
// headers): the DOM is built with createElement/textContent only.
'use strict';

(function () {
  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  // protojson omits zero values: missing means "" / 0 / [].
  const str = (v) => (v === undefined || v === null ? '' : String(v));
  const arr = (v) => (Array.isArray(v) ? v : []);
  const obj = (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null);
  // Only for true quantities (round-trip time, counters); never for phone numbers.
  const qty = (v) => {
    const n = Number(str(v));
    return Number.isFinite(n) ? n : 0;
  };

  const pad2 = (n) => (n < 10 ? '0' : '') + n;

  // RFC 3339 with up to nanoseconds; Date.parse wants at most milliseconds.
  function parseTime(v) {
    const s = str(v);
    if (!s) return NaN;
    const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$/.exec(s);
    return Date.parse(m && m[2] ? m[1] + m[2].slice(0, 4) + m[3] : s);
  }

  function clock(ms) {
    const d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  function formatDuration(sec) {
    sec = Math.max(0, Math.floor(sec));
    return pad2(Math.floor(sec / 60)) + ':' + pad2(sec % 60);
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Write only on change: keeps layout work small on big boards.
  function setText(e, s) {
    if (e.textContent !== s) e.textContent = s;
  }
  function setClass(e, c) {
    if (e.className !== c) e.className = c;
  }
  function setAttr(e, name, v) {
    if (v === '' || v === null || v === undefined) {
      if (e.hasAttribute(name)) e.removeAttribute(name);
    } else if (e.getAttribute(name) !== v) {
      e.setAttribute(name, v);
    }
  }
  function show(e, visible) {
    e.classList.toggle('d-none', !visible);
  }

  // Put container's children in the order of entries ([key, item]), creating
  // and updating nodes through nodes (Map key -> element); drop the rest.
  function reconcile(container, nodes, entries, create, update) {
    const seen = new Set();
    let ref = container.firstChild;
    for (const [key, item] of entries) {
      seen.add(key);
      let node = nodes.get(key);
      if (!node) {
        node = create(item);
        nodes.set(key, node);
      }
      update(node, item);
      if (node === ref) ref = ref.nextSibling;
      else container.insertBefore(node, ref);
    }
    for (const [key, node] of nodes) {
      if (!seen.has(key)) {
        node.remove();
        nodes.delete(key);
      }
    }
  }

  const byName = (a, b) => a.localeCompare(b, undefined, { numeric: true, sensitivity: 'base' });

  // ------------------------------------------------------------------ model

  const model = {
    tenant: '',
    version: null, // BigInt once a snapshot arrived
    pbxs: new Map(), // pbx_id -> PbxView
    endpoints: new Map(), // pbx_id/name -> EndpointView
    calls: new Map(), // pbx_id/linkedid -> CallView
    registrations: new Map(), // pbx_id/key -> TrunkRegistrationView
  };
  const updatedAt = { pbxs: 0, extensions: 0, trunks: 0, calls: 0 };
  const firstSeen = new Map(); // call key -> local ms, for calls without timestamps

  const pbxKey = (r) => str(r.pbx_id);
  const endpointKey = (r) => str(r.pbx_id) + '/' + str(r.name);
  const callKey = (r) => str(r.pbx_id) + '/' + str(r.linkedid);
  const regKey = (r) => str(r.pbx_id) + '/' + str(r.key);
  const isTrunk = (ep) => str(ep.kind) === 'ENDPOINT_KIND_TRUNK';

  function parseVersion(v) {
    const s = str(v) || '0';
    if (!/^\d+$/.test(s)) return null;
    return BigInt(s);
  }

  // Server clock minus local clock, estimated from deltas' committed_at (the
  // smallest recent sample: network and commit latency only add to it).
  const skewSamples = [];
  let skew = 0;
  function sampleSkew(committedAt) {
    const t = parseTime(committedAt);
    if (!Number.isFinite(t)) return;
    skewSamples.push(Date.now() - t);
    if (skewSamples.length > 20) skewSamples.shift();
    skew = Math.min(...skewSamples);
  }
  const serverNow = () => Date.now() - skew;

  function markUpdated(section, now) {
    updatedAt[section] = now;
  }

  function putEndpoint(ep, now) {
    const key = endpointKey(ep);
    const old = model.endpoints.get(key);
    if (old && isTrunk(old) !== isTrunk(ep)) markUpdated(isTrunk(old) ? 'trunks' : 'extensions', now);
    model.endpoints.set(key, ep);
    markUpdated(isTrunk(ep) ? 'trunks' : 'extensions', now);
  }

  function applySnapshot(data) {
    const version = parseVersion(data.version);
    if (version === null) return false;
    const now = Date.now();
    model.tenant = str(data.tenant);
    model.version = version;
    model.pbxs.clear();
    model.endpoints.clear();
    model.calls.clear();
    model.registrations.clear();
    for (const r of arr(data.pbxs).map(obj)) if (r) model.pbxs.set(pbxKey(r), r);
    for (const r of arr(data.endpoints).map(obj)) if (r) model.endpoints.set(endpointKey(r), r);
    for (const r of arr(data.calls).map(obj)) if (r) model.calls.set(callKey(r), r);
    for (const r of arr(data.registrations).map(obj)) if (r) model.registrations.set(regKey(r), r);
    for (const k of firstSeen.keys()) if (!model.calls.has(k)) firstSeen.delete(k);
    for (const s of Object.keys(updatedAt)) markUpdated(s, now);
    return true;
  }

  // Applies a delta; false when it is not the next version (caller resyncs).
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
        markUpdated('pbxs', now);
      } else if ((r = obj(c.endpoint))) {
        putEndpoint(r, now);
      } else if ((r = obj(c.call))) {
        model.calls.set(callKey(r), r);
        markUpdated('calls', now);
      } else if ((r = obj(c.registration))) {
        model.registrations.set(regKey(r), r);
        markUpdated('trunks', now);
      } else if ((r = obj(c.call_removed))) {
        const k = callKey(r);
        model.calls.delete(k);
        firstSeen.delete(k);
        markUpdated('calls', now);
      }
    }
    model.version = version;
    sampleSkew(data.committed_at);
    return true;
  }

  // ------------------------------------------------------------- rendering

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
  };
  const CALL_CLASS = {
    dialing: 'text-bg-info',
    ringing: 'text-bg-warning',
    up: 'text-bg-success',
    bridged: 'text-bg-success',
  };
  const TECH = { TECHNOLOGY_PJSIP: 'PJSIP', TECHNOLOGY_SIP: 'SIP', TECHNOLOGY_IAX2: 'IAX2' };

  function regClass(status) {
    const s = status.toLowerCase();
    if (s === 'registered') return 'text-bg-success';
    if (s === 'rejected' || s === 'failed' || s === 'unregistered' || s === 'stopped') return 'text-bg-danger';
    return 'text-bg-secondary';
  }

  const pbxConnected = (pbxId) => {
    const p = model.pbxs.get(pbxId);
    return !!p && str(p.state) === 'connected';
  };

  // The status to show: the row's, unless its PBX is not connected (then we
  // do not know).
  function effectiveStatus(ep) {
    if (!pbxConnected(str(ep.pbx_id))) return 'unknown';
    return str(ep.status) || 'unknown';
  }

  // "PJSIP/1001-0000002a" -> "1001"; Local and other channels yield names too
  // but never match an endpoint of that PBX by accident in practice.
  function channelEndpoint(name) {
    const m = /^[^/]+\/(.+)-[0-9a-fA-F]+(?:;\d+)?$/.exec(name);
    return m ? m[1] : '';
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

  // ---- navbar and PBXs

  function renderHeader() {
    setText($('tenant'), model.tenant);
    setText($('version'), model.version === null ? '–' : model.version.toString());
    const n = model.calls.size;
    document.title = 'pbxpulse' + (model.tenant ? ' · ' + model.tenant : '') + (n ? ' (' + n + ')' : '');
  }

  const pbxNodes = new Map();
  function createPbx() {
    const root = el('span', 'pbx');
    root._state = root.appendChild(el('span', 'badge pbx-state'));
    root._name = root.appendChild(el('span', 'pbx-name fw-semibold'));
    root._detail = root.appendChild(el('span', 'pbx-detail small text-body-secondary'));
    return root;
  }
  function updatePbx(root, p) {
    const state = str(p.state) || 'unknown';
    setAttr(root, 'data-pbx', str(p.pbx_id));
    setAttr(root, 'data-state', state);
    setText(root._state, state);
    setClass(root._state, 'badge pbx-state ' + (PBX_CLASS[state] || 'text-bg-secondary'));
    setText(root._name, str(p.pbx_id));
    const parts = [];
    if (str(p.detail)) parts.push(str(p.detail));
    if (state !== 'connected' && qty(p.attempt) > 0) parts.push('attempt ' + qty(p.attempt));
    setText(root._detail, parts.join(' · '));
    const since = parseTime(p.since);
    const tip = [];
    if (str(p.banner)) tip.push(str(p.banner));
    if (Number.isFinite(since)) tip.push(state + ' since ' + new Date(since).toLocaleString());
    if (str(p.detail)) tip.push(str(p.detail));
    setAttr(root, 'title', tip.join('\n'));
  }
  function renderPbxs() {
    const entries = [...model.pbxs].sort((a, b) => byName(a[0], b[0]));
    reconcile($('pbxs'), pbxNodes, entries, createPbx, updatePbx);
    show($('pbxs-empty'), entries.length === 0);
  }

  // ---- endpoint cards (extensions and trunks)

  function createCard(item) {
    const col = el('div', 'col');
    const card = col.appendChild(el('div', 'card ep-card h-100'));
    const body = card.appendChild(el('div', 'card-body'));
    const head = body.appendChild(el('div', 'd-flex justify-content-between align-items-start gap-2'));
    const titles = head.appendChild(el('div', 'min-w-0'));
    col._card = card;
    col._name = titles.appendChild(el('div', 'ep-name'));
    col._sub = titles.appendChild(el('div', 'ep-line text-body-secondary'));
    col._badge = head.appendChild(el('span', 'badge status-badge'));
    col._device = body.appendChild(el('div', 'ep-line ep-device'));
    if (item.type !== 'endpoint') col._device.remove();
    col._regs = body.appendChild(el('div', 'ep-regs'));
    col._ua = body.appendChild(el('div', 'ep-line ep-ua text-body-secondary text-truncate'));
    col._rtt = body.appendChild(el('div', 'ep-line ep-rtt text-body-secondary'));
    col._calls = body.appendChild(el('div', 'ep-line ep-calls text-danger-emphasis fw-semibold text-truncate'));
    return col;
  }

  function otherParty(call, epName) {
    const callerNum = str(call.caller_num);
    const num = callerNum === epName ? str(call.callee_num) : callerNum;
    const name = callerNum === epName ? str(call.callee_name) : str(call.caller_name);
    return [num, name].filter(Boolean).join(' ');
  }

  function renderRegs(box, regs) {
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

  function updateEndpointCard(col, item) {
    const ep = item.ep;
    const pbxId = str(ep.pbx_id);
    const name = str(ep.name);
    const connected = pbxConnected(pbxId);
    const status = effectiveStatus(ep);
    const calls = item.calls;
    const busy = connected && (status === 'in_call' || status === 'ringing' || calls.length > 0);
    const blink = !busy ? '' : status === 'ringing' ? ' ringing' : ' in-call';

    setAttr(col, 'data-endpoint', pbxId + '/' + name);
    setAttr(col, 'data-status', status);
    setAttr(col, 'data-calls', String(calls.length));
    setClass(col._card, 'card ep-card h-100' + blink + (connected ? '' : ' stale'));
    setText(col._name, name);
    setText(col._sub, [pbxId, TECH[str(ep.technology)] || ''].filter(Boolean).join(' · '));
    setText(col._badge, status.replace('_', ' ')); // data-status keeps the token
    setClass(col._badge, 'badge status-badge ' + (STATUS_CLASS[status] || 'text-bg-secondary'));
    setText(col._device, str(ep.device_state));

    const contact = obj(arr(ep.contacts)[0]) || {};
    const ua = str(contact.user_agent);
    setText(col._ua, ua);
    setAttr(col._ua, 'title', [ua, str(contact.uri), str(contact.via_address)].filter(Boolean).join('\n'));
    const usec = qty(contact.roundtrip_usec);
    setText(col._rtt, usec > 0 ? 'RTT ' + (usec / 1000).toFixed(usec < 10000 ? 1 : 0) + ' ms' : '');

    let callsText = '';
    if (calls.length > 0) {
      callsText = calls.length + (calls.length === 1 ? ' call' : ' calls');
      const peer = otherParty(calls[0], name);
      if (peer) callsText += ' · ' + peer;
    } else if (connected && qty(ep.active_channels) > 0) {
      const n = qty(ep.active_channels);
      callsText = n + (n === 1 ? ' channel' : ' channels');
    }
    setText(col._calls, callsText);

    if (item.regs) renderRegs(col._regs, item.regs);
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

  // Registrations belong to the trunk of the same PBX named like their key
  // ("acme" or "acme-reg"); the rest get a card of their own.
  function matchRegistrations(trunks) {
    const byTrunk = new Map();
    const orphans = [];
    for (const [k, r] of model.registrations) {
      const pbxId = str(r.pbx_id);
      const key = str(r.key);
      let best = null;
      for (const [tk, ep] of trunks) {
        if (str(ep.pbx_id) !== pbxId) continue;
        const n = str(ep.name);
        if (!n) continue;
        const exact = key === n;
        const prefix = key.length > n.length && key.startsWith(n) && /[-_.:@]/.test(key[n.length]);
        if (exact || prefix) {
          if (!best || exact || n.length > best.n.length) best = { tk, n, exact };
          if (exact) break;
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

  function renderEndpoints() {
    const callIdx = callsByEndpoint();
    const exts = [];
    const trunks = [];
    for (const e of model.endpoints) (isTrunk(e[1]) ? trunks : exts).push(e);
    const order = (a, b) => byName(str(a[1].pbx_id), str(b[1].pbx_id)) || byName(str(a[1].name), str(b[1].name));
    exts.sort(order);
    trunks.sort(order);
    const withCalls = (ep) => callIdx.get(str(ep.pbx_id) + '\n' + str(ep.name)) || [];

    // Extensions.
    const counts = {};
    const extEntries = exts.map(([k, ep]) => {
      const s = effectiveStatus(ep);
      counts[s] = (counts[s] || 0) + 1;
      return [k, { type: 'endpoint', ep, calls: withCalls(ep) }];
    });
    reconcile($('extensions'), extNodes, extEntries, createCard, updateCard);
    show($('extensions-empty'), extEntries.length === 0);
    setText(
      $('extensions-summary'),
      ['online', 'in_call', 'ringing', 'offline', 'unknown']
        .filter((s) => counts[s])
        .map((s) => counts[s] + ' ' + s.replace('_', ' '))
        .join(' · '),
    );

    // Trunks and their registrations.
    const { byTrunk, orphans } = matchRegistrations(trunks);
    const trunkEntries = trunks.map(([k, ep]) => [
      'e:' + k,
      { type: 'endpoint', ep, calls: withCalls(ep), regs: byTrunk.get(k) || [] },
    ]);
    orphans.sort((a, b) => byName(a[0], b[0]));
    for (const [k, reg] of orphans) trunkEntries.push(['r:' + k, { type: 'registration', reg }]);
    reconcile($('trunks'), trunkNodes, trunkEntries, createCard, updateCard);
    show($('trunks-empty'), trunkEntries.length === 0);
    let registered = 0;
    for (const r of model.registrations.values()) if (str(r.status).toLowerCase() === 'registered') registered++;
    setText(
      $('trunks-summary'),
      model.registrations.size ? registered + '/' + model.registrations.size + ' registered' : '',
    );
  }

  // ---- calls

  const callNodes = new Map();

  function callStart(key, call) {
    const answered = parseTime(call.answered_at);
    if (Number.isFinite(answered)) return { ms: answered, answered: true };
    const started = parseTime(call.started_at);
    if (Number.isFinite(started)) return { ms: started, answered: false };
    if (!firstSeen.has(key)) firstSeen.set(key, serverNow());
    return { ms: firstSeen.get(key), answered: false };
  }

  function createCall() {
    const tr = el('tr');
    const caller = tr.appendChild(el('td'));
    tr._callerNum = caller.appendChild(el('span', 'caller-num num'));
    tr._callerName = caller.appendChild(el('span', 'caller-name'));
    const callee = tr.appendChild(el('td'));
    tr._calleeNum = callee.appendChild(el('span', 'callee-num num'));
    tr._calleeName = callee.appendChild(el('span', 'callee-name'));
    const state = tr.appendChild(el('td'));
    tr._state = state.appendChild(el('span', 'badge call-state'));
    tr._pbx = state.appendChild(el('div', 'call-pbx'));
    tr._duration = tr.appendChild(el('td', 'call-duration num text-end'));
    return tr;
  }

  function updateCall(tr, item) {
    const { key, call } = item;
    const state = str(call.state) || 'unknown';
    setAttr(tr, 'data-linkedid', str(call.linkedid));
    setAttr(tr, 'data-call', key);
    setAttr(tr, 'data-state', state);
    setText(tr._callerNum, str(call.caller_num));
    setText(tr._callerName, str(call.caller_name));
    setText(tr._calleeNum, str(call.callee_num));
    setText(tr._calleeName, str(call.callee_name));
    setText(tr._state, state);
    setClass(tr._state, 'badge call-state ' + (CALL_CLASS[state] || 'text-bg-secondary'));
    setText(tr._pbx, model.pbxs.size > 1 ? str(call.pbx_id) : '');
    const start = callStart(key, call);
    tr._start = start.ms;
    setAttr(tr._duration, 'title', (start.answered ? 'answered ' : 'since ') + clock(start.ms));
    setText(tr._duration, formatDuration((serverNow() - start.ms) / 1000));
  }

  function renderCalls() {
    const entries = [...model.calls].map(([key, call]) => [key, { key, call, start: callStart(key, call).ms }]);
    entries.sort((a, b) => a[1].start - b[1].start || byName(a[0], b[0]));
    reconcile($('calls'), callNodes, entries, createCall, updateCall);
    show($('calls-empty'), entries.length === 0);
    setText($('calls-count'), String(entries.length));
    setClass($('calls-count'), 'badge ' + (entries.length ? 'text-bg-danger' : 'text-bg-secondary'));
  }

  function tickDurations() {
    const now = serverNow();
    for (const tr of callNodes.values()) setText(tr._duration, formatDuration((now - tr._start) / 1000));
  }

  function renderUpdated() {
    for (const s of Object.keys(updatedAt)) {
      const t = $(s + '-updated');
      const ms = updatedAt[s];
      setText(t, ms ? clock(ms) : '–');
      setAttr(t, 'datetime', ms ? new Date(ms).toISOString() : '');
    }
  }

  function render() {
    renderHeader();
    renderPbxs();
    renderEndpoints();
    renderCalls();
    renderUpdated();
  }

  // Coalesce bursts of messages into one render per frame (with a timer as
  // fallback: hidden tabs get no animation frames).
  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    let done = false;
    const run = () => {
      if (done) return;
      done = true;
      renderPending = false;
      render();
    };
    requestAnimationFrame(run);
    setTimeout(run, 200);
  }

  // ------------------------------------------------------------ connection

  let ws = null;
  let link = 'connecting';
  let attempt = 0; // reconnect attempts since the last snapshot
  let retryTimer = 0;

  const LINK_CLASS = {
    connecting: 'text-bg-secondary',
    connected: 'text-bg-success',
    reconnecting: 'text-bg-warning',
    offline: 'text-bg-danger',
  };

  function setLink(state) {
    link = state;
    const badge = $('ws-state');
    setText(badge, state);
    setClass(badge, 'badge ' + LINK_CLASS[state]);
    const a = $('ws-attempt');
    setText(a, attempt > 0 ? 'attempt ' + attempt : '');
    show(a, state !== 'connected' && attempt > 0);
    document.body.classList.toggle('link-down', state !== 'connected');
  }

  function wsURL() {
    let u =
      (location.protocol === 'https:' ? 'wss:' : 'ws:') +
      '//' +
      location.host +
      location.pathname.replace(/[^/]*$/, '') +
      'ws';
    const token = new URLSearchParams(location.search).get('token');
    if (token) u += '?token=' + encodeURIComponent(token);
    return u;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    let sock;
    try {
      sock = new WebSocket(wsURL());
    } catch (e) {
      ws = null;
      scheduleReconnect();
      return;
    }
    ws = sock;
    sock.onmessage = (ev) => onMessage(sock, ev);
    sock.onclose = () => onClosed(sock);
    sock.onerror = () => onClosed(sock);
  }

  function onClosed(sock) {
    if (sock !== ws) return; // an old socket, already handled
    ws = null;
    try {
      sock.close();
    } catch (e) {
      /* already closing */
    }
    scheduleReconnect();
  }

  // 0.5 s doubling to 10 s, ±25 % jitter.
  function scheduleReconnect() {
    if (retryTimer) return;
    attempt++;
    const base = Math.min(10000, 500 * 2 ** (attempt - 1));
    const delay = Math.min(10000, Math.round(base * (0.75 + Math.random() * 0.5)));
    setLink(navigator.onLine === false ? 'offline' : 'reconnecting');
    retryTimer = setTimeout(connect, delay);
  }

  // Drop the connection and start again from a fresh snapshot.
  function resync() {
    const sock = ws;
    if (!sock) return;
    try {
      sock.close(4000, 'resync');
    } catch (e) {
      /* ignore */
    }
    onClosed(sock);
  }

  function showError(message) {
    const box = $('server-error');
    setText(box, message ? 'Server: ' + message : '');
    show(box, !!message);
  }

  function onMessage(sock, ev) {
    if (sock !== ws || typeof ev.data !== 'string') return;
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
        attempt = 0;
        showError('');
        setLink('connected');
        scheduleRender();
        break;
      case 'delta':
        if (!applyDelta(data)) {
          resync();
          return;
        }
        scheduleRender();
        break;
      case 'error':
        showError(str(msg.message) || 'error');
        break;
      default:
      // Unknown message types are ignored (newer server).
    }
  }

  window.addEventListener('online', () => {
    if (!ws) connect();
  });
  window.addEventListener('offline', () => {
    if (link !== 'connected') setLink('offline');
  });

  // Debugging: window.pbxpulse.state / .version.
  window.pbxpulse = {
    get state() {
      return {
        tenant: model.tenant,
        link,
        attempt,
        pbxs: Object.fromEntries(model.pbxs),
        endpoints: Object.fromEntries(model.endpoints),
        calls: Object.fromEntries(model.calls),
        registrations: Object.fromEntries(model.registrations),
      };
    },
    get version() {
      return model.version === null ? null : model.version.toString();
    },
    get link() {
      return link;
    },
  };

  setInterval(tickDurations, 1000);
  setLink('connecting');
  render();
  connect();
})();
