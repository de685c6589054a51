// The gateway's HTTP API and the panel's credentials.
//
// The token comes from the URL fragment (#token=..., never sent to a server
// by the browser), from the sign-in form, or is not needed at all when the
// gateway is open. It is kept in sessionStorage (this tab only) and sent only
// to the gateway, with relative URLs: never in a URL, never to another origin.

import { obj, str } from './dom.js';

const KEY = 'pbxpulse.token';

export const auth = {
  token: '',
  // {tenant, role, subject} from api/v1/whoami.
  principal: null,
};

const ROLES = { viewer: 1, supervisor: 2, admin: 3 };

// can("supervisor") is true for supervisors and admins.
export function can(role) {
  const p = auth.principal;
  return !!p && (ROLES[str(p.role)] || 0) >= ROLES[role];
}

function storage() {
  try {
    return window.sessionStorage;
  } catch (e) {
    return null; // storage blocked (sandboxed iframe): keep the token in memory
  }
}

// Takes a token out of the URL fragment ("#token=T" or "#/page?x=1&token=T")
// into sessionStorage and removes it from the address bar and history.
export function loadToken() {
  const h = location.hash;
  const m = /([#&?])token=([^&]*)/.exec(h);
  if (m) {
    let token = '';
    try {
      token = decodeURIComponent(m[2]);
    } catch (e) {
      token = m[2];
    }
    setToken(token);
    let rest = h.slice(0, m.index) + (m[1] === '#' ? '#' : m[1]) + h.slice(m.index + m[0].length);
    rest = rest.replace(/[?&]$/, '').replace(/[?&]&/, (s) => s[0]);
    if (rest === '#' || rest === '') rest = '#/overview';
    history.replaceState(history.state, '', location.pathname + location.search + rest);
  } else {
    const s = storage();
    auth.token = (s && s.getItem(KEY)) || auth.token;
  }
}

export function setToken(token) {
  auth.token = str(token).trim();
  const s = storage();
  if (!s) return;
  if (auth.token) s.setItem(KEY, auth.token);
  else s.removeItem(KEY);
}

export function headers(extra) {
  const h = Object.assign({}, extra);
  if (auth.token) h.Authorization = 'Bearer ' + auth.token;
  return h;
}

// "api/v1/history" + {from: ..., pbx: ""} -> "api/v1/history?from=..." (empty values left out).
export function apiURL(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return 'api/v1/' + path + (s ? '?' + s : '');
}

// Calls the API. Resolves to {status, ok, data} whatever the status; data is
// the parsed JSON body, or {error, message} when the body was not JSON.
export async function api(path, opts) {
  opts = opts || {};
  const init = { method: opts.method || 'GET', headers: headers({ Accept: 'application/json' }), signal: opts.signal, cache: 'no-store' };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(apiURL(path, opts.params), init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    return { status: 0, ok: false, data: { error: 'network', message: 'the gateway cannot be reached' } };
  }
  let data = null;
  const type = res.headers.get('Content-Type') || '';
  const text = await res.text();
  if (type.includes('json')) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (!obj(data)) data = res.ok ? { text } : { error: 'http_' + res.status, message: text.trim().slice(0, 300) || res.statusText };
  if (res.status === 401 && onUnauthorized) onUnauthorized();
  return { status: res.status, ok: res.ok, data };
}

let onUnauthorized = null;
// The app signs out when the gateway stops taking the token.
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

// Fetches a file with the bearer header and hands it to the browser as a
// download (a plain link could not carry the header).
export async function download(url, filename) {
  const res = await fetch(url, { headers: headers(), cache: 'no-store' });
  if (!res.ok) throw new Error('HTTP ' + res.status);
  saveBlob(await res.blob(), filename);
}

export function saveBlob(blob, filename) {
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  a.rel = 'noopener';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 30000);
}

// Sends one supervisor/admin action to a PBX: the reply is the collector's
// CommandReply ({ok, message, error_code, options, ...}) or the gateway's
// error ({error, message}).
export function action(pbx, name, body) {
  return api('pbx/' + encodeURIComponent(pbx) + '/actions/' + encodeURIComponent(name), { method: 'POST', body });
}
