// Supervisor actions (hang up, transfer, click-to-call, spy) and the admin's
// endpoint configuration editor. Each opens a modal dialog, asks for
// confirmation, sends the request to the gateway and shows the PBX's answer.
// The gateway checks the role again and sets the actor; hiding buttons here
// is only a convenience.

import { action, can } from './api.js';
import { $, arr, channelEndpoint, clear, el, obj, str, TECH } from './dom.js';
import { model, isTrunk } from './live.js';

// The collector's checks (services/collector commands.go), so that a typo is
// caught before it reaches the PBX.
const RE = {
  channel: /^[A-Za-z0-9_]+\/[A-Za-z0-9_.@:+*#;/=-]{1,200}$/,
  exten: /^[A-Za-z0-9_*#+.!-]{1,80}$/,
  context: /^[A-Za-z0-9_.-]{1,80}$/,
  section: /^[A-Za-z0-9_.+@-]{1,80}$/,
  option: /^[a-z0-9_]{1,64}$/,
  // Printable text of at most 256 characters: no control characters, so no
  // line break can smuggle a second option into the PBX's configuration.
  value: /^[^\x00-\x1f\x7f]{0,256}$/,
};

function remember(key, v) {
  try {
    localStorage.setItem('pbxpulse.' + key, v);
  } catch (e) {
    /* storage blocked */
  }
}
function recall(key) {
  try {
    return localStorage.getItem('pbxpulse.' + key) || '';
  } catch (e) {
    return '';
  }
}

// ------------------------------------------------------------------- modal

let current = null; // the open dialog's spec

function dialog() {
  return $('modal');
}

function closeModal() {
  const d = dialog();
  current = null;
  if (d.open) d.close();
}

function setButtons(buttons) {
  const footer = clear($('modal-footer'));
  for (const b of buttons) {
    const btn = footer.appendChild(el('button', { type: 'button', class: 'btn ' + (b.class || 'btn-secondary'), id: b.id }, b.label));
    btn.addEventListener('click', b.onClick);
  }
}

function setError(message) {
  const e = $('modal-error');
  e.textContent = message || '';
  e.classList.toggle('d-none', !message);
}

// openModal runs a dialog through its steps:
//   form (optional): spec.body() builds the inputs; spec.validate() returns
//     an error text or the request to send;
//   confirm: spec.confirmText(request) says what will happen;
//   result: the PBX's answer.
export function openModal(spec) {
  const d = dialog();
  current = spec;
  $('modal-title').textContent = spec.title;
  d.dataset.action = spec.action || '';
  if (!d.open) d.showModal();
  if (spec.load) loadStep(spec);
  else formStep(spec);
}

async function loadStep(spec) {
  const body = clear($('modal-body'));
  setError('');
  body.appendChild(el('div', 'text-body-secondary', spec.loadingText || 'Loading…'));
  setButtons([{ label: 'Cancel', onClick: closeModal }]);
  const res = await spec.load();
  if (current !== spec) return;
  if (!res.ok || (res.data && res.data.ok === false)) {
    resultStep(spec, res);
    return;
  }
  spec.loaded = res.data;
  formStep(spec);
}

function formStep(spec) {
  const body = clear($('modal-body'));
  setError('');
  if (spec.body) body.appendChild(spec.body(spec));
  const next = () => {
    const out = spec.validate ? spec.validate(spec) : {};
    if (typeof out === 'string') {
      setError(out);
      return;
    }
    confirmStep(spec, out);
  };
  setButtons([
    { label: 'Cancel', onClick: closeModal, id: 'modal-cancel' },
    { label: spec.form ? 'Continue' : spec.confirmLabel, class: spec.form ? 'btn-primary' : spec.danger ? 'btn-danger' : 'btn-primary', id: 'modal-next', onClick: spec.form ? next : () => {
      const out = spec.validate ? spec.validate(spec) : {};
      if (typeof out === 'string') setError(out);
      else run(spec, out);
    } },
  ]);
  const form = body.querySelector('form');
  if (form) {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      $('modal-next').click();
    });
    const first = form.querySelector('input:not([type=hidden]):not([disabled])') || form.querySelector('select');
    if (first) first.focus();
  }
}

function confirmStep(spec, request) {
  const body = clear($('modal-body'));
  setError('');
  const text = spec.confirmText(request);
  body.appendChild(typeof text === 'string' ? el('p', 'mb-0', text) : text);
  setButtons([
    { label: 'Back', onClick: () => formStep(spec), id: 'modal-back' },
    { label: spec.confirmLabel, class: spec.danger ? 'btn-danger' : 'btn-primary', id: 'modal-confirm', onClick: () => run(spec, request) },
  ]);
  $('modal-confirm').focus();
}

async function run(spec, request) {
  for (const b of $('modal-footer').querySelectorAll('button')) b.disabled = true;
  setError('');
  const body = $('modal-body');
  body.appendChild(el('div', { class: 'mt-2 text-body-secondary', id: 'modal-sending' }, 'Sending to ' + spec.pbx + '…'));
  const res = await spec.send(request);
  if (current !== spec) return;
  resultStep(spec, res);
}

// describeReply turns a gateway/collector answer into {ok, code, message}.
export function describeReply(res) {
  const d = obj(res.data) || {};
  const ok = res.ok && d.ok !== false;
  const code = ok ? '' : str(d.error_code) || str(d.errorCode) || str(d.error) || 'http_' + res.status;
  let message = str(d.message);
  if (!message) message = ok ? 'Done.' : 'The request failed (HTTP ' + res.status + ').';
  return { ok, code, message, requestId: str(d.request_id) || str(d.requestId) };
}

function resultStep(spec, res) {
  const body = clear($('modal-body'));
  setError('');
  const r = describeReply(res);
  const box = body.appendChild(el('div', { class: 'alert mb-0 ' + (r.ok ? 'alert-success' : 'alert-danger'), id: 'modal-result', role: 'status' }));
  box.dataset.ok = String(r.ok);
  box.dataset.code = r.code;
  box.appendChild(el('div', 'fw-semibold', r.ok ? 'The PBX answered: OK' : 'Not done' + (r.code ? ' (' + r.code + ')' : '')));
  box.appendChild(el('div', { class: 'reply-message', id: 'modal-reply' }, r.message));
  if (r.requestId) box.appendChild(el('div', 'small text-body-secondary mt-1', 'request ' + r.requestId));
  if (spec.after) spec.after(res, body);
  setButtons([{ label: 'Close', class: 'btn-primary', onClick: closeModal, id: 'modal-close' }]);
  $('modal-close').focus();
}

export function initModal() {
  const d = dialog();
  $('modal-x').addEventListener('click', closeModal);
  d.addEventListener('cancel', () => {
    current = null;
  });
  // A click on the backdrop (the dialog element itself) closes it.
  d.addEventListener('click', (ev) => {
    if (ev.target === d) closeModal();
  });
}

// ------------------------------------------------------------------ inputs

function field(label, input, help) {
  const id = input.id || 'f-' + Math.random().toString(36).slice(2);
  input.id = id;
  const wrap = el('div', 'mb-2');
  wrap.appendChild(el('label', { class: 'form-label small mb-1', for: id }, label));
  wrap.appendChild(input);
  if (help) wrap.appendChild(el('div', 'form-text', help));
  return wrap;
}

function input(name, value, props) {
  return el('input', Object.assign({ class: 'form-control form-control-sm', name, value: value || '', autocomplete: 'off', spellcheck: 'false' }, props));
}

function select(name, options, value) {
  const s = el('select', { class: 'form-select form-select-sm', name });
  for (const o of options) {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    const opt = s.appendChild(el('option', { value: v }, label));
    if (v === value) opt.selected = true;
  }
  return s;
}

function formValue(name) {
  const e = $('modal-body').querySelector('[name="' + name + '"]');
  return e ? str(e.value).trim() : '';
}

function channels(call) {
  return arr(call.channels).map(obj).filter(Boolean).map((c) => str(c.name)).filter(Boolean);
}

function callSummary(call) {
  const a = [str(call.caller_num), str(call.caller_name)].filter(Boolean).join(' ');
  const b = [str(call.callee_num), str(call.callee_name)].filter(Boolean).join(' ');
  return (a || '?') + ' → ' + (b || '?');
}

function channelOptions(call) {
  return channels(call).map((n) => {
    const ep = channelEndpoint(n);
    return [n, ep ? ep + ' — ' + n : n];
  });
}

// The PBX's extensions as dial strings ("PJSIP/1005"), for "your phone".
function phonesOf(pbx) {
  const out = [];
  for (const ep of model.endpoints.values()) {
    if (str(ep.pbx_id) !== pbx || isTrunk(ep)) continue;
    out.push((TECH[str(ep.technology)] || 'PJSIP') + '/' + str(ep.name));
  }
  return out.sort();
}

// ------------------------------------------------------------------ actions

export function hangupCall(call) {
  if (!can('supervisor')) return;
  const pbx = str(call.pbx_id);
  const chans = channels(call);
  openModal({
    title: 'Hang up call',
    action: 'hangup',
    pbx,
    danger: true,
    confirmLabel: 'Hang up',
    body: () => {
      const f = el('form');
      f.appendChild(el('p', 'mb-2', 'Hang up the call ' + callSummary(call) + ' on ' + pbx + '?'));
      if (chans.length > 1) f.appendChild(field('Channel', select('channel', channelOptions(call), chans[0]), 'Hanging up one side of a two-party call ends it.'));
      return f;
    },
    validate: () => {
      const channel = chans.length > 1 ? formValue('channel') : chans[0] || '';
      if (!RE.channel.test(channel)) return 'This call has no channel that can be hung up.';
      return { channel };
    },
    send: (req) => action(pbx, 'hangup', req),
  });
}

export function transferCall(call) {
  if (!can('supervisor')) return;
  const pbx = str(call.pbx_id);
  const chans = channels(call);
  const first = obj(arr(call.channels)[0]) || {};
  openModal({
    title: 'Transfer call',
    action: 'redirect',
    pbx,
    form: true,
    confirmLabel: 'Transfer',
    body: () => {
      const f = el('form');
      f.appendChild(el('p', 'small text-body-secondary mb-2', callSummary(call) + ' · ' + pbx));
      f.appendChild(field('Channel to transfer', select('channel', channelOptions(call), chans[0])));
      f.appendChild(field('To extension', input('exten', '', { required: true, inputmode: 'tel', placeholder: 'e.g. 1003' })));
      f.appendChild(field('Context', input('context', str(first.context) || recall('context') || 'default')));
      return f;
    },
    validate: () => {
      const req = { channel: formValue('channel'), exten: formValue('exten'), context: formValue('context') };
      if (!RE.channel.test(req.channel)) return 'Choose a channel.';
      if (!RE.exten.test(req.exten)) return 'The extension may hold letters, digits and _*#+.!- only (1 to 80).';
      if (!RE.context.test(req.context)) return 'The context may hold letters, digits and _.- only (1 to 80).';
      return req;
    },
    confirmText: (r) => 'Transfer ' + r.channel + ' to ' + r.exten + '@' + r.context + ' on ' + pbx + '? The other side stays in the call only if the dialplan keeps it.',
    send: (req) => {
      remember('context', req.context);
      return action(pbx, 'redirect', req);
    },
  });
}

export function spyCall(call) {
  if (!can('supervisor')) return;
  const pbx = str(call.pbx_id);
  const chans = channels(call);
  openModal({
    title: 'Listen to call',
    action: 'spy',
    pbx,
    form: true,
    confirmLabel: 'Ring my phone',
    body: () => {
      const f = el('form');
      f.appendChild(el('p', 'small text-body-secondary mb-2', callSummary(call) + ' · ' + pbx));
      f.appendChild(field('Channel to listen to', select('channel', channelOptions(call), chans[0])));
      const phones = phonesOf(pbx);
      const mine = recall('phone');
      const p = input('supervisor_channel', mine || phones[0] || '', { list: 'phones', placeholder: 'PJSIP/1005', required: true });
      const dl = el('datalist', { id: 'phones' });
      for (const ph of phones) dl.appendChild(el('option', { value: ph }));
      const w = field('Your phone', p, 'It rings first; answer it to listen.');
      w.appendChild(dl);
      f.appendChild(w);
      f.appendChild(field('Mode', select('mode', [['listen', 'listen'], ['whisper', 'whisper (the agent hears you)'], ['barge', 'barge (both hear you)']], 'listen')));
      return f;
    },
    validate: () => {
      const req = { channel: formValue('channel'), supervisor_channel: formValue('supervisor_channel'), mode: formValue('mode') };
      if (!RE.channel.test(req.channel)) return 'Choose a channel.';
      if (!RE.channel.test(req.supervisor_channel)) return 'Your phone is a dial string such as PJSIP/1005.';
      return req;
    },
    confirmText: (r) => 'Ring ' + r.supervisor_channel + ' and ' + r.mode + ' on ' + r.channel + '?',
    send: (req) => {
      remember('phone', req.supervisor_channel);
      return action(pbx, 'spy', req);
    },
  });
}

export function originateFrom(ep) {
  if (!can('supervisor')) return;
  const pbx = str(ep.pbx_id);
  const channel = (TECH[str(ep.technology)] || 'PJSIP') + '/' + str(ep.name);
  openModal({
    title: 'Call from ' + str(ep.name),
    action: 'originate',
    pbx,
    form: true,
    confirmLabel: 'Call',
    body: () => {
      const f = el('form');
      f.appendChild(el('p', 'small text-body-secondary mb-2', channel + ' rings first; when it answers, the PBX dials the number.'));
      f.appendChild(field('Number', input('exten', '', { required: true, inputmode: 'tel', placeholder: 'e.g. 1002' })));
      f.appendChild(field('Context', input('context', recall('context') || 'default')));
      return f;
    },
    validate: () => {
      const req = { channel, exten: formValue('exten'), context: formValue('context') };
      if (!RE.exten.test(req.exten)) return 'The number may hold letters, digits and _*#+.!- only (1 to 80).';
      if (!RE.context.test(req.context)) return 'The context may hold letters, digits and _.- only (1 to 80).';
      return req;
    },
    confirmText: (r) => 'Ring ' + r.channel + ', then dial ' + r.exten + '@' + r.context + ' on ' + pbx + '?',
    send: (req) => {
      remember('context', req.context);
      return action(pbx, 'originate', req);
    },
  });
}

const SECRET = new Set(['password', 'md5_cred', 'secret']);

// editConfig shows an endpoint's pjsip.conf section (config_get) and changes
// the options the admin edited (config_update).
export function editConfig(ep, type) {
  if (!can('admin')) return;
  const pbx = str(ep.pbx_id);
  const section = str(ep.name);
  type = type || 'endpoint';
  const spec = {
    title: 'Configuration of ' + section + ' (' + type + ')',
    action: 'config_update',
    pbx,
    form: true,
    confirmLabel: 'Save and reload',
    loadingText: 'Reading ' + type + ' ' + section + ' from ' + pbx + '…',
    load: () => action(pbx, 'config_get', { section, type }),
    body: (s) => {
      const f = el('form', { class: 'config-form', autocomplete: 'off' });
      const top = f.appendChild(el('div', 'd-flex align-items-center gap-2 mb-2'));
      top.appendChild(el('span', 'small text-body-secondary', pbx + ' · pjsip.conf · [' + section + ']'));
      const types = select('section_type', ['endpoint', 'aor', 'auth'], type);
      types.classList.add('w-auto', 'ms-auto');
      types.setAttribute('aria-label', 'section type');
      types.addEventListener('change', () => editConfig(ep, types.value));
      top.appendChild(types);
      const opts = arr(obj(s.loaded) && s.loaded.options).map(obj).filter(Boolean);
      s.original = new Map();
      if (!opts.length) f.appendChild(el('p', 'text-body-secondary', 'The section has no options.'));
      for (const o of opts) {
        const name = str(o.name);
        const value = str(o.value);
        if (name === 'type') continue; // cannot change
        s.original.set(name, value);
        const secret = SECRET.has(name);
        const row = f.appendChild(el('div', 'row g-1 align-items-center mb-1'));
        row.appendChild(el('label', { class: 'col-5 col-form-label col-form-label-sm text-truncate', for: 'cfg-' + name, title: name }, name));
        const inp = input('cfg:' + name, value, { id: 'cfg-' + name, placeholder: secret ? '(hidden: type to replace)' : '', type: secret ? 'password' : 'text', maxlength: '256' });
        inp.dataset.option = name;
        row.appendChild(el('div', 'col-7')).appendChild(inp);
      }
      return f;
    },
    validate: (s) => {
      const set = {};
      for (const inp of $('modal-body').querySelectorAll('input[data-option]')) {
        const name = inp.dataset.option;
        const v = inp.value;
        if (v === s.original.get(name)) continue;
        if (!RE.option.test(name)) return 'Option ' + name + ' cannot be changed from here.';
        if (!RE.value.test(v)) return 'The value of ' + name + ' must be printable text of at most 256 characters, without line breaks.';
        set[name] = v;
      }
      if (!Object.keys(set).length) return 'Nothing changed.';
      return { section, type, set };
    },
    confirmText: (r) => {
      const box = el('div');
      box.appendChild(el('p', 'mb-2', 'Change ' + Object.keys(r.set).length + ' option(s) of [' + section + '] (' + type + ') on ' + pbx + ' and reload res_pjsip?'));
      const ul = box.appendChild(el('ul', 'config-changes mb-0 small'));
      for (const [k, v] of Object.entries(r.set)) {
        const li = ul.appendChild(el('li'));
        li.appendChild(el('code', '', k));
        li.appendChild(document.createTextNode(': '));
        if (SECRET.has(k)) li.appendChild(document.createTextNode('(new secret)'));
        else {
          li.appendChild(el('del', 'text-body-secondary', spec.original.get(k) || '""'));
          li.appendChild(document.createTextNode(' → '));
          li.appendChild(el('ins', '', v || '""'));
        }
      }
      return box;
    },
    send: (req) => action(pbx, 'config_update', req),
  };
  openModal(spec);
}

// Buttons on cards and rows are built here so that the role decides once.
export function actionButton(label, cls, onClick, title) {
  const b = el('button', { type: 'button', class: 'btn btn-sm ' + cls, title: title || label }, label);
  b.addEventListener('click', (ev) => {
    ev.stopPropagation();
    onClick();
  });
  return b;
}
