// pbxpulse live supervisor panel: sign-in, hash routing and rendering.
//
// Pages: #/overview, #/queues, #/trunks, #/history, #/logs?endpoint=1001.
// Every URL is relative, so the panel works under any path prefix and in an
// iframe. Every string from the server is untrusted (caller-ID comes from SIP
// headers): the DOM is built with createElement/textContent only.

import { initModal } from './actions.js';
import { api, auth, can, loadToken, setToken, setUnauthorizedHandler } from './api.js';
import { $, parseRoute, setClass, setText, show, str } from './dom.js';
import { enterHistory, historyChanged, initHistory, renderHistory } from './history.js';
import { link, model, on, requestUpdate, start, stop } from './live.js';
import { enterLogs, initLogs, leaveLogs, renderLogs } from './logs.js';
import { initOverview, renderOverview, tickOverview } from './overview.js';
import { renderQueues, tickQueues } from './queues.js';
import { enterTrunks, healthSample, initTrunks, renderTrunks } from './trunks.js';

const PAGES = {
  overview: { render: renderOverview, tick: tickOverview },
  queues: { render: renderQueues, tick: tickQueues },
  trunks: { enter: enterTrunks, render: renderTrunks, throttle: 2000 },
  history: { enter: enterHistory, render: renderHistory },
  logs: { enter: enterLogs, leave: leaveLogs, render: renderLogs },
};

let page = '';

// ---------------------------------------------------------------- render

function renderHeader() {
  setText($('version'), model.version === null ? '–' : model.version.toString());
  const n = model.calls.size;
  const tenant = (auth.principal && str(auth.principal.tenant)) || model.tenant;
  document.title = 'pbxpulse' + (tenant ? ' · ' + tenant : '') + (n ? ' (' + n + ')' : '');
  setText($('nav-calls'), n ? String(n) : '');
  let waiting = 0;
  for (const q of model.queues.values()) waiting += Array.isArray(q.callers) ? q.callers.length : 0;
  setText($('nav-waiting'), waiting ? String(waiting) : '');
}

function render() {
  renderHeader();
  const p = PAGES[page];
  if (p && p.render) p.render();
}

// Coalesce bursts of messages into one render per frame (with a timer as
// fallback: hidden tabs get no animation frames). Heavy pages render at most
// once per their throttle.
let renderPending = false;
let lastRender = 0;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  const p = PAGES[page];
  const wait = p && p.throttle ? Math.max(0, lastRender + p.throttle - Date.now()) : 0;
  let done = false;
  const run = () => {
    if (done) return;
    done = true;
    renderPending = false;
    lastRender = Date.now();
    render();
  };
  if (wait > 0) {
    setTimeout(run, wait);
    return;
  }
  requestAnimationFrame(run);
  setTimeout(run, 200);
}

// ---------------------------------------------------------------- routing

function route() {
  const { page: want, params } = parseRoute(location.hash);
  const next = PAGES[want] ? want : 'overview';
  if (page && page !== next && PAGES[page].leave) PAGES[page].leave();
  page = next;
  for (const name of Object.keys(PAGES)) {
    show($('page-' + name), name === next);
    const a = $('nav-' + name);
    a.classList.toggle('active', name === next);
    if (name === next) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.body.dataset.page = next;
  if (PAGES[next].enter) PAGES[next].enter(params);
  render();
}

// ------------------------------------------------------------------ link

const LINK_CLASS = {
  connecting: 'text-bg-secondary',
  connected: 'text-bg-success',
  reconnecting: 'text-bg-warning',
  offline: 'text-bg-danger',
};

function renderLink() {
  const badge = $('ws-state');
  setText(badge, link.state);
  setClass(badge, 'badge ' + LINK_CLASS[link.state]);
  const a = $('ws-attempt');
  setText(a, link.attempt > 0 ? 'attempt ' + link.attempt : '');
  show(a, link.state !== 'connected' && link.attempt > 0);
  document.body.classList.toggle('link-down', link.state !== 'connected');
  // A token the gateway no longer takes fails the WebSocket handshake,
  // which a browser cannot tell from a network error: ask whoami now and then.
  if (link.state === 'reconnecting' && link.attempt % 3 === 0) checkAuth();
}

let errorTimer = 0;
function showError(e) {
  const box = $('server-error');
  setText(box, e && e.message ? 'Server: ' + e.message : '');
  show(box, !!(e && e.message));
  clearTimeout(errorTimer);
  if (e && e.message) errorTimer = setTimeout(() => show(box, false), 10000);
}

// ------------------------------------------------------------------ auth

async function whoami() {
  const res = await api('whoami');
  if (res.ok) return { ok: true, principal: res.data };
  // A gateway older than whoami: carry on, as a viewer.
  if (res.status === 404) return { ok: true, principal: { tenant: '', role: 'viewer', subject: '' } };
  return { ok: false, status: res.status, message: str(res.data.message) || str(res.data.error) };
}

async function checkAuth() {
  const r = await whoami();
  if (!r.ok && r.status === 401) signOut('The gateway no longer accepts this token.');
}

function applyPrincipal() {
  const p = auth.principal || {};
  setText($('tenant'), str(p.tenant));
  setText($('role'), str(p.role));
  $('role').title = str(p.subject) ? 'signed in as ' + str(p.subject) : '';
  document.body.dataset.role = str(p.role);
  document.body.classList.toggle('can-supervise', can('supervisor'));
  document.body.classList.toggle('can-admin', can('admin'));
  show($('sign-out'), !!auth.token);
}

function showSignIn(message) {
  show($('signin'), true);
  show($('app'), false);
  const m = $('signin-message');
  setText(m, message || '');
  show(m, !!message);
  $('signin-token').focus();
}

async function signIn() {
  const r = await whoami();
  if (!r.ok) {
    if (r.status === 401 || r.status === 403) {
      // Without a token the gateway simply wants one: no error to show.
      const had = auth.token !== '';
      setToken('');
      showSignIn(had ? 'The gateway did not accept this token.' : '');
    } else {
      showSignIn('The gateway cannot be reached (' + (r.message || 'HTTP ' + r.status) + '); retrying…');
      setTimeout(signIn, 3000);
    }
    return;
  }
  auth.principal = r.principal;
  show($('signin'), false);
  show($('app'), true);
  applyPrincipal();
  start();
  route();
}

function signOut(message) {
  stop();
  setToken('');
  auth.principal = null;
  $('signin-token').value = '';
  showSignIn(message || '');
}

// ------------------------------------------------------------------ start

function init() {
  loadToken();
  initModal();
  initOverview(scheduleRender);
  initLogs();
  initHistory();
  initTrunks();
  on('change', scheduleRender);
  on('link', renderLink);
  on('error', showError);
  on('history', historyChanged);
  on('health', (s) => {
    healthSample(s);
    if (page === 'trunks') scheduleRender();
  });
  setUnauthorizedHandler(() => {
    if (auth.principal) signOut('The gateway no longer accepts this token.');
  });
  window.addEventListener('hashchange', () => {
    if (auth.principal) route();
  });
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken($('signin-token').value);
    if (!auth.token) {
      showSignIn('Paste a token.');
      return;
    }
    signIn();
  });
  $('sign-out').addEventListener('click', () => signOut('Signed out.'));
  $('refresh').addEventListener('click', requestUpdate);
  setInterval(() => {
    const p = PAGES[page];
    if (p && p.tick) p.tick();
  }, 1000);
  renderLink();
  signIn();
}

init();
