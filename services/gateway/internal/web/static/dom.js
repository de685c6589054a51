// DOM and value helpers shared by every page.
//
// Everything the panel shows comes from a PBX and is untrusted (a caller-ID
// name is whatever the caller sent): nodes are built with createElement and
// filled with textContent only, never parsed as markup.

export const $ = (id) => document.getElementById(id);

// protojson omits zero values: missing means "" / 0 / [].
export const str = (v) => (v === undefined || v === null ? '' : String(v));
export const arr = (v) => (Array.isArray(v) ? v : []);
export const obj = (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null);

// Only for true quantities (round trips, counters); never for phone numbers,
// whose leading zeros matter.
export function qty(v) {
  const n = Number(str(v));
  return Number.isFinite(n) ? n : 0;
}

const pad2 = (n) => (n < 10 ? '0' : '') + n;

// RFC 3339 with up to nanoseconds; Date.parse wants at most milliseconds.
export function parseTime(v) {
  const s = str(v);
  if (!s) return NaN;
  const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$/.exec(s);
  return Date.parse(m && m[2] ? m[1] + m[2].slice(0, 4) + m[3] : s);
}

export function clock(ms) {
  const d = new Date(ms);
  return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
}

export function dateTime(ms) {
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + clock(ms);
}

// 75 -> "01:15", 3725 -> "1:02:05".
export function formatDuration(sec) {
  sec = Math.max(0, Math.floor(sec));
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return (h ? h + ':' + pad2(m) : pad2(m)) + ':' + pad2(s);
}

// el("span", "badge", "text") or el("a", {class, href, title, data: {...}}, "text").
export function el(tag, props, text) {
  const e = document.createElement(tag);
  if (typeof props === 'string') {
    if (props) e.className = props;
  } else if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'data') for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = dv;
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else if (k.startsWith('on') || k === 'style') throw new Error('el: ' + k + ' is not allowed');
      else if (k in e && typeof v !== 'string') e[k] = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
  }
  if (text !== undefined) e.textContent = text;
  return e;
}

export function clear(e) {
  while (e.firstChild) e.firstChild.remove();
  return e;
}

// Write only on change: keeps layout work small on big boards.
export function setText(e, s) {
  if (e.textContent !== s) e.textContent = s;
}
export function setClass(e, c) {
  if (e.className !== c) e.className = c;
}
export function setAttr(e, name, v) {
  if (v === '' || v === null || v === undefined) {
    if (e.hasAttribute(name)) e.removeAttribute(name);
  } else if (e.getAttribute(name) !== v) {
    e.setAttribute(name, v);
  }
}
export function show(e, visible) {
  e.classList.toggle('d-none', !visible);
}

// Puts container's children in the order of entries ([key, item]), creating
// and updating nodes through nodes (Map key -> element); drops the rest.
export function reconcile(container, nodes, entries, create, update) {
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

export const byName = (a, b) => a.localeCompare(b, undefined, { numeric: true, sensitivity: 'base' });

// A hash route with its query: "#/logs?endpoint=1001" -> {page: "logs", params}.
export function parseRoute(hash) {
  const h = str(hash).replace(/^#\/?/, '');
  const q = h.indexOf('?');
  const page = (q < 0 ? h : h.slice(0, q)) || 'overview';
  return { page, params: new URLSearchParams(q < 0 ? '' : h.slice(q + 1)) };
}

export function routeHash(page, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return '#/' + page + (s ? '?' + s : '');
}

// "PJSIP/1001-0000002a" -> "1001" (also "PJSIP/1001-0000002a;1" of Local pairs).
export function channelEndpoint(name) {
  const m = /^[^/]+\/(.+)-[0-9a-fA-F]+(?:;\d+)?$/.exec(str(name));
  return m ? m[1] : '';
}

export const TECH = { TECHNOLOGY_PJSIP: 'PJSIP', TECHNOLOGY_SIP: 'SIP', TECHNOLOGY_IAX2: 'IAX2' };
