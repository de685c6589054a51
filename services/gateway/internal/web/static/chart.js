// A small time-series chart as inline SVG built with DOM calls (no chart
// library, no markup strings): round trips as a line, unreachable samples as
// red marks, and registration changes (flaps) as vertical lines.

import { clock, str } from './dom.js';

// The namespace is an identifier, not a URL that is fetched.
const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// 0.8 -> 1, 13 -> 20, 170 -> 200: a round top for the y axis.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function tickStep(rangeMs) {
  const steps = [60e3, 5 * 60e3, 10 * 60e3, 15 * 60e3, 30 * 60e3, 3600e3, 2 * 3600e3, 3 * 3600e3, 6 * 3600e3];
  for (const s of steps) if (rangeMs / s <= 7) return s;
  return 12 * 3600e3;
}

// healthChart draws points ({t, kind, status, cause, rttMs}) between from
// and to (ms) and returns the <svg>.
export function healthChart(points, from, to, title) {
  const W = 640;
  const H = 150;
  const L = 44;
  const R = 8;
  const T = 10;
  const B = 22;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'health-chart', role: 'img', 'aria-label': title });
  root.appendChild(svg('title', {}, title));
  const rtts = points.filter((p) => p.kind === 'roundtrip' && p.rttMs > 0);
  const max = niceMax(Math.max(0, ...rtts.map((p) => p.rttMs)) * 1.1);
  const x = (t) => L + ((t - from) / (to - from)) * (W - L - R);
  const y = (ms) => T + (1 - ms / max) * (H - T - B);

  // Grid and axes.
  const grid = root.appendChild(svg('g', { class: 'grid' }));
  for (const f of [0, 0.5, 1]) {
    const ms = max * f;
    grid.appendChild(svg('line', { x1: L, x2: W - R, y1: y(ms), y2: y(ms) }));
    grid.appendChild(svg('text', { x: L - 4, y: y(ms) + 4, 'text-anchor': 'end', class: 'axis' }, (ms < 10 ? ms.toFixed(1) : ms.toFixed(0)) + ' ms'));
  }
  const step = tickStep(to - from);
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    grid.appendChild(svg('line', { x1: x(t), x2: x(t), y1: T, y2: H - B, class: 'vtick' }));
    grid.appendChild(svg('text', { x: x(t), y: H - 6, 'text-anchor': 'middle', class: 'axis' }, clock(t).slice(0, 5)));
  }

  // Registration changes: green when registered again, red otherwise.
  for (const p of points.filter((p) => p.kind === 'registration')) {
    const ok = str(p.status).toLowerCase() === 'registered';
    const line = root.appendChild(svg('line', { x1: x(p.t), x2: x(p.t), y1: T, y2: H - B, class: 'flap ' + (ok ? 'flap-up' : 'flap-down') }));
    line.appendChild(svg('title', {}, clock(p.t) + ' registration ' + str(p.status) + (p.cause ? ': ' + p.cause : '')));
  }

  // Round trips: a line broken where the trunk was unreachable.
  let d = '';
  let pen = false;
  for (const p of points.filter((p) => p.kind === 'roundtrip')) {
    if (p.rttMs > 0) {
      d += (pen ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p.rttMs).toFixed(1) + ' ';
      pen = true;
    } else {
      pen = false;
      const m = root.appendChild(svg('rect', { x: x(p.t) - 2, y: H - B - 6, width: 4, height: 6, class: 'unreachable' }));
      m.appendChild(svg('title', {}, clock(p.t) + ' ' + (str(p.status) || 'unreachable')));
    }
  }
  if (d) root.appendChild(svg('path', { d, class: 'rtt-line' }));
  for (const p of rtts) {
    const c = root.appendChild(svg('circle', { cx: x(p.t).toFixed(1), cy: y(p.rttMs).toFixed(1), r: 2, class: 'rtt-dot' }));
    c.appendChild(svg('title', {}, clock(p.t) + ' ' + p.rttMs.toFixed(1) + ' ms'));
  }
  if (!points.length) root.appendChild(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'axis' }, 'no samples in this period'));
  return root;
}

// levelBars draws stacked bars of log entries per minute ({t, levels:
// {error: n, ...}}) between from and to (ms), one colour class per level.
export function levelBars(minutes, from, to, levels, title) {
  const W = 640;
  const H = 90;
  const L = 44;
  const R = 8;
  const T = 6;
  const B = 18;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'level-bars', role: 'img', 'aria-label': title });
  root.appendChild(svg('title', {}, title));
  const total = (m) => levels.reduce((a, l) => a + (m.levels[l] || 0), 0);
  const max = niceMax(Math.max(0, ...minutes.map(total)));
  const x = (t) => L + ((t - from) / (to - from)) * (W - L - R);
  const y = (n) => T + (1 - n / max) * (H - T - B);
  const grid = root.appendChild(svg('g', { class: 'grid' }));
  for (const f of [0, 1]) {
    grid.appendChild(svg('line', { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }));
    grid.appendChild(svg('text', { x: L - 4, y: y(max * f) + 4, 'text-anchor': 'end', class: 'axis' }, String(Math.round(max * f))));
  }
  const step = tickStep(to - from);
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    grid.appendChild(svg('text', { x: x(t), y: H - 4, 'text-anchor': 'middle', class: 'axis' }, clock(t).slice(0, 5)));
  }
  const w = Math.max(1, ((W - L - R) * 60000) / (to - from) - 1);
  for (const m of minutes) {
    let n = 0;
    const g = root.appendChild(svg('g', { class: 'bar' }));
    g.appendChild(svg('title', {}, clock(m.t).slice(0, 5) + ' ' + levels.filter((l) => m.levels[l]).map((l) => l.toUpperCase() + ' ' + m.levels[l]).join(', ')));
    for (const l of levels) {
      const c = m.levels[l] || 0;
      if (!c) continue;
      g.appendChild(svg('rect', { x: x(m.t).toFixed(1), y: y(n + c).toFixed(1), width: w.toFixed(1), height: (y(n) - y(n + c)).toFixed(1), class: 'lvl-' + l }));
      n += c;
    }
  }
  return root;
}
