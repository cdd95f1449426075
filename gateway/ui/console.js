// geogate web console: plain JavaScript, no dependencies. Everything it
// shows comes from this region's HTTP API (same origin); a bearer token
// the user gives is kept in sessionStorage and sent with every request.
'use strict';

const TOKEN_KEY = 'geogate.token';
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

// ---- helpers --------------------------------------------------------------

// el builds an element; attrs set attributes (on*, functions, as
// listeners); children are nodes or strings (always as text, never HTML).
function el(tag, attrs, ...children) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === 'function') e.addEventListener(k.replace(/^on/, ''), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

function headers(extra) {
  const h = Object.assign({}, extra);
  if (token()) h['Authorization'] = 'Bearer ' + token();
  return h;
}

// api makes one request to this region's API and returns {status, body}
// (body parsed as JSON when it is JSON). Authentication failures show in
// the banner.
async function api(path, opts) {
  opts = opts || {};
  const init = { method: opts.method || 'GET', headers: headers(opts.headers), cache: 'no-store' };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers['Content-Type'] = 'application/json';
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let body = text;
  try { body = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
  if (resp.status === 401) banner('This region wants a bearer token (401 unauthenticated): enter one at the top.', true);
  return { status: resp.status, body, headers: resp.headers };
}

function errorText(r) {
  if (r.body && typeof r.body === 'object' && r.body.error) return `${r.status} ${r.body.code}: ${r.body.error}`;
  return `${r.status} ${typeof r.body === 'string' ? r.body.slice(0, 200) : ''}`;
}

let bannerTimer = null;
function banner(msg, isError) {
  const b = $('banner');
  b.textContent = msg;
  b.hidden = !msg;
  b.className = 'banner' + (isError ? ' error' : '');
  clearTimeout(bannerTimer);
  if (msg && !isError) bannerTimer = setTimeout(() => banner(''), 5000);
}

// keyPath is the API path of a key: one path segment, '.' encoded too, so
// any key arrives unchanged.
function keyPath(key) { return '/v1/kv/' + encodeURIComponent(key).replace(/\./g, '%2E'); }

function hlcText(h) {
  if (!h) return '';
  const d = new Date(h.w);
  return (isNaN(d) ? h.w : d.toISOString().replace('T', ' ').replace('Z', '')) + (h.l ? ` +${h.l}` : '');
}

function json(v) { return JSON.stringify(v); }

function lagText(s) {
  if (s === undefined || s === null) return '';
  if (s < 1) return Math.round(s * 1000) + ' ms';
  return s.toFixed(1) + ' s';
}

function kv(pairs) {
  return el('dl', { class: 'kv' }, pairs.filter(Boolean).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

// ---- token ----------------------------------------------------------------

function showTokenState() {
  $('token-state').textContent = token() ? 'a token is in use for this tab' : '';
}

function initToken() {
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    $('token').value = '';
    showTokenState();
    banner(t ? 'Token saved for this tab.' : 'No token.');
    refreshAll();
  });
  $('token-clear').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    banner('Token forgotten.');
  });
  showTokenState();
}

// ---- deployment graph -------------------------------------------------------

const state = { self: '', regions: [], links: [], selected: null, statuses: {}, errors: {} };

async function refreshDeployment() {
  let r;
  try { r = await api('/v1/status?peers=true'); } catch (e) { banner('This region does not answer: ' + e, true); return; }
  if (r.status !== 200) { banner('GET /v1/status: ' + errorText(r), true); return; }
  const st = r.body;
  if ($('banner').classList.contains('error') && $('banner').textContent.startsWith('This region does not answer')) banner('');
  state.self = st.region;
  state.statuses = { [st.region]: st };
  state.errors = {};
  for (const p of st.peers || []) {
    if (p.status) state.statuses[p.region] = p.status; else state.errors[p.region] = p.error || 'no answer';
  }
  state.regions = Object.keys(st.urls || { [st.region]: '' }).sort();
  state.urls = st.urls || {};
  // Every link is reported by the region that applies it (its "to").
  state.links = [];
  for (const name of state.regions) {
    const s = state.statuses[name];
    if (!s) continue;
    for (const l of s.links || []) state.links.push(Object.assign({ to: name }, l));
  }
  document.title = 'geogate ' + st.region;
  $('region-name').textContent = st.region;
  $('topology').textContent = st.topology || '';
  drawGraph();
  drawLinksTable();
  drawLinkDetail();
  drawRegionStatus(st);
}

function layout(regions) {
  const cx = 320, cy = 190, r = regions.length > 1 ? 130 : 0;
  const pos = {};
  regions.forEach((name, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / regions.length;
    pos[name] = { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) };
  });
  return pos;
}

function linkId(l) { return l.from + '-' + l.to; }

function drawGraph() {
  const svg = $('graph');
  const pos = layout(state.regions);
  svg.replaceChildren();
  const defs = el('svg:defs', {});
  for (const s of ['up', 'paused', 'down', 'unknown']) {
    defs.append(el('svg:marker', { id: 'arrow-' + s, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse', class: 'arrow state-' + s },
      el('svg:path', { d: 'M 0 0 L 10 5 L 0 10 z' })));
  }
  svg.append(defs);
  const R = 34;
  for (const l of state.links) {
    const a = pos[l.from], b = pos[l.to];
    if (!a || !b) continue;
    // A curve bent to the right of from -> to, so that the two directions
    // between a pair of regions do not overlap.
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
    const ux = dx / len, uy = dy / len, nx = -uy, ny = ux;
    const sx = a.x + ux * R + nx * 8, sy = a.y + uy * R + ny * 8;
    const ex = b.x - ux * R + nx * 8, ey = b.y - uy * R + ny * 8;
    const mx = (sx + ex) / 2 + nx * 22, my = (sy + ey) / 2 + ny * 22;
    const d = `M ${sx} ${sy} Q ${mx} ${my} ${ex} ${ey}`;
    const stateName = l.state || 'unknown';
    const g = el('svg:g', {
      class: 'edge state-' + stateName + (state.selected === linkId(l) ? ' selected' : ''),
      'data-testid': 'edge-' + linkId(l), 'data-state': stateName, 'data-from': l.from, 'data-to': l.to,
      onclick: () => { state.selected = linkId(l); drawGraph(); drawLinkDetail(); },
    },
    el('svg:title', {}, `${l.from} → ${l.to}: ${stateName}, lag ${lagText(l.lag_seconds)}, ${l.pending} pending`),
    el('svg:path', { d, class: 'hit' }),
    el('svg:path', { d, class: 'line', 'marker-end': `url(#arrow-${stateName})` }),
    el('svg:text', { x: mx + nx * 6, y: my + ny * 6 }, stateName === 'up' ? lagText(l.lag_seconds) : stateName));
    svg.append(g);
  }
  for (const name of state.regions) {
    const p = pos[name];
    const s = state.statuses[name];
    const err = state.errors[name];
    const cls = 'node' + (name === state.self ? ' self' : '') + (s ? '' : ' unreachable');
    svg.append(el('svg:g', { class: cls, 'data-testid': 'node-' + name, 'data-region': name },
      el('svg:title', {}, s ? `${name}: seq ${s.seq}, ${s.outbox_pending} outbox entries pending` : `${name}: ${err || 'unknown'}`),
      el('svg:circle', { cx: p.x, cy: p.y, r: R }),
      el('svg:text', { x: p.x, y: p.y - 2 }, name),
      el('svg:text', { x: p.x, y: p.y + 13, class: 'sub' }, s ? 'seq ' + s.seq : 'unreachable')));
  }
}

function linkButtons(l) {
  const act = (action) => () => linkAction(l, action);
  return [
    el('button', { 'data-testid': `pause-${linkId(l)}`, onclick: act('pause'), disabled: l.state === 'paused' }, 'Pause'),
    ' ',
    el('button', { 'data-testid': `resume-${linkId(l)}`, onclick: act('resume'), disabled: l.state !== 'paused' }, 'Resume'),
  ];
}

function drawLinksTable() {
  const body = $('links-table').tBodies[0];
  body.replaceChildren(...state.links.map((l) => el('tr', { 'data-testid': 'link-row-' + linkId(l), 'data-state': l.state },
    el('td', {}, `${l.from} → ${l.to}`),
    el('td', { class: 'state-' + l.state }, l.state),
    el('td', {}, lagText(l.lag_seconds)),
    el('td', {}, l.pending),
    el('td', {}, l.applied),
    el('td', {}, l.last_heartbeat && !l.last_heartbeat.startsWith('0001') ? new Date(l.last_heartbeat).toLocaleTimeString() : ''),
    el('td', {}, linkButtons(l)))));
}

function drawLinkDetail() {
  const box = $('link-detail');
  const l = state.links.find((x) => linkId(x) === state.selected);
  if (!l) { box.replaceChildren(el('p', { class: 'muted' }, 'Select a link in the graph.')); return; }
  box.replaceChildren(
    el('h3', {}, `${l.from} → ${l.to}`),
    el('p', { class: 'hint' }, `Region ${l.to} pulls ${l.from}'s stream; pausing stops it at ${l.to} (nothing is missed: its consumer stays).`),
    kv([
      ['state', el('span', { class: 'state-' + l.state, 'data-testid': 'link-detail-state' }, l.state)],
      ['lag', lagText(l.lag_seconds)],
      ['pending', String(l.pending)],
      ['applied', String(l.applied)],
      ['waiting', String(l.waiting)],
      ['last heartbeat', l.last_heartbeat || ''],
    ]),
    el('div', {}, linkButtons(l)));
}

async function linkAction(l, action) {
  const path = `/v1/admin/links/${encodeURIComponent(l.from)}/${action}?at=${encodeURIComponent(l.to)}`;
  const r = await api(path, { method: 'POST' });
  if (r.status !== 200) { banner(`${action} ${l.from} → ${l.to}: ${errorText(r)}`, true); return; }
  banner(`Link ${l.from} → ${l.to} ${action === 'pause' ? 'paused' : 'resumed'}.`);
  refreshDeployment();
}

// ---- this region ------------------------------------------------------------

function drawRegionStatus(st) {
  const applied = Object.entries(st.applied || {}).sort();
  $('region-status').replaceChildren(
    kv([
      ['region', st.region],
      ['actor', el('span', { class: 'mono' }, st.actor)],
      ['topology', st.topology],
      ['log position', String(st.seq)],
      ['outbox', `${st.outbox_pending} pending, ${st.outbox_unpublished} unpublished (${st.log_mode} mode)`],
      st.rules && ['rules', `${st.rules.count} rules, hash ${st.rules.hash}, from ${st.rules.source}`],
      ['URL', (st.urls || {})[st.region] || location.origin],
    ]),
    el('h3', {}, 'Applied, per origin'),
    el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'actor'), el('th', {}, 'position'))),
      el('tbody', {}, applied.map(([a, n]) => el('tr', {}, el('td', { class: 'mono' }, a), el('td', {}, n))))));
}

// ---- keys -------------------------------------------------------------------

const keys = { prefix: '', next: '', selected: '' };

async function listKeys(more) {
  if (!more) { keys.prefix = $('prefix').value; keys.next = ''; $('key-list').replaceChildren(); }
  const q = new URLSearchParams({ prefix: keys.prefix, limit: '50' });
  if (keys.next) q.set('after', keys.next);
  if ($('conflicted').checked) q.set('conflicted', 'true');
  const r = await api('/v1/kv?' + q);
  if (r.status !== 200) { banner('List keys: ' + errorText(r), true); return; }
  const list = $('key-list');
  for (const k of r.body.keys || []) {
    list.append(el('li', {}, el('button', { 'data-testid': 'key-item', 'data-key': k, onclick: (ev) => {
      for (const b of list.querySelectorAll('button.selected')) b.classList.remove('selected');
      ev.currentTarget.classList.add('selected');
      showKey(k);
    } }, k)));
  }
  if (!list.children.length) list.append(el('li', { class: 'muted' }, 'no key'));
  keys.next = r.body.next || '';
  $('key-more').hidden = !keys.next;
  $('known-keys').replaceChildren(...[...list.querySelectorAll('button')].map((b) => el('option', { value: b.dataset.key })));
}

async function showKey(key) {
  keys.selected = key;
  const box = $('key-detail');
  box.replaceChildren(el('p', { class: 'muted' }, 'loading ' + key + '…'));
  const [meta, read, explain] = await Promise.all([
    api(keyPath(key) + '?meta=true'),
    api(keyPath(key)),
    api('/v1/admin/rules/explain?key=' + encodeURIComponent(key)),
  ]);
  if (keys.selected !== key) return;
  if (meta.status !== 200) { box.replaceChildren(el('p', {}, `${key}: ${errorText(meta)}`)); return; }
  const m = meta.body;
  const live = m.versions.filter((v) => !v.deleted);
  let readText;
  if (read.status === 200) readText = '200: ' + json(read.body);
  else if (read.status === 300) readText = `300: ${read.body.siblings.length} siblings ` + read.body.siblings.map(json).join(', ');
  else readText = errorText(read);
  const parts = [
    el('h3', { 'data-testid': 'key-detail-key' }, key),
    kv([
      ['rule', el('span', { 'data-testid': 'key-rule' }, m.rule)],
      ['a read shows', el('span', { 'data-testid': 'key-read' }, readText)],
      ['versions', `${m.versions.length} in the frontier, ${live.length} live` + (live.length > 1 ? ' (siblings)' : '')],
      ['causal context', el('code', { title: 'X-Geo-Context: pass it with the next write of this key', 'data-testid': 'key-context' }, m.context)],
    ]),
    el('table', { 'data-testid': 'key-versions' },
      el('thead', {}, el('tr', {}, ['dot', 'origin', 'HLC', 'value'].map((h) => el('th', {}, h)))),
      el('tbody', {}, m.versions.map((v) => el('tr', { class: v.deleted ? 'tombstone' : '', 'data-testid': 'version', 'data-origin': v.origin, 'data-dot': v.dot },
        el('td', { class: 'mono' }, v.dot),
        el('td', {}, v.origin),
        el('td', { class: 'mono', title: json(v.hlc) }, hlcText(v.hlc)),
        el('td', {}, el('pre', {}, v.deleted ? '(deleted)' : json(v.value))))))),
  ];
  if (explain.status === 200) {
    const x = explain.body;
    parts.push(el('h3', {}, 'Governing rule'), kv([
      ['rule', `${x.rule || '(none)'}` + (x.strategy ? ` (${x.strategy})` : '') + (x.held ? ` — held: ${x.held}` : '')],
      ['tried', (x.tried || []).map((s) => `${s.rule}: ${s.result}${s.error ? ' (' + s.error + ')' : ''}`).join('; ')],
      ['read', `${x.read.status} ${x.read.outcome}` + (x.read.kept ? `, kept ${x.read.kept}` : '') + (x.read.discarded ? `, discarded ${x.read.discarded.join(', ')}` : '')],
      ['write without context', x.supersedes_without_context ? 'supersedes what is shown' : 'adds a sibling'],
      x.resolver && ['resolver', x.resolver],
      x.errors && ['errors', x.errors.join('; ')],
    ]));
  } else {
    parts.push(el('p', { class: 'muted' }, 'Rule explanation: ' + errorText(explain)));
  }
  parts.push(el('button', { onclick: () => { $('pg-key').value = key; $('playground').scrollIntoView(); } }, 'Try in the rule playground'));
  box.replaceChildren(...parts);
}

// ---- conflict log -----------------------------------------------------------

const seenConflicts = new Set();
let conflictsPrimed = false;

async function refreshConflicts() {
  const r = await api('/v1/conflicts?limit=50');
  if (r.status !== 200) return;
  const feed = $('conflict-feed');
  const fresh = (r.body.conflicts || []).filter((c) => !seenConflicts.has(c.seq)).reverse();
  for (const c of fresh) {
    seenConflicts.add(c.seq);
    const vtext = (v) => v.deleted ? 'a delete' : json(v.value);
    const kept = c.kept ? `kept ${vtext(c.kept)} from ${c.kept.origin}` : '';
    const li = el('li', { 'data-testid': 'conflict', 'data-key': c.key, 'data-rule': c.rule, class: conflictsPrimed ? 'new' : '' },
      el('strong', {}, c.key), ' ', el('span', { class: 'badge' }, c.rule), ' ',
      el('span', { class: 'muted' }, new Date(c.at).toLocaleTimeString()), el('br'),
      kept, c.discarded && c.discarded.length ? `; discarded ${c.discarded.length}: ` + c.discarded.map((v) => `${vtext(v)} from ${v.origin}`).join(', ') : '',
      c.note ? el('div', { class: 'muted' }, c.note) : null);
    feed.prepend(li);
  }
  while (feed.children.length > 200) feed.lastChild.remove();
  if (!feed.children.length) feed.append(el('li', { class: 'muted', 'data-testid': 'no-conflict' }, 'no conflict logged'));
  else { const none = feed.querySelector('[data-testid="no-conflict"]'); if (none) none.remove(); }
  conflictsPrimed = true;
}

// ---- change feed (server-sent events over fetch, so the token is sent) -------

const changes = { ctrl: null, last: null, prefix: '', retry: 1000 };

function startChanges() {
  if (changes.ctrl) changes.ctrl.abort();
  changes.prefix = $('change-prefix').value;
  changes.last = null;
  $('change-feed').replaceChildren();
  watchLoop(new AbortController());
}

async function watchLoop(ctrl) {
  changes.ctrl = ctrl;
  while (!ctrl.signal.aborted) {
    const h = headers({ Accept: 'text/event-stream' });
    if (changes.last !== null) h['Last-Event-ID'] = String(changes.last);
    try {
      $('change-state').textContent = 'connecting';
      const resp = await fetch('/v1/watch?prefix=' + encodeURIComponent(changes.prefix), { headers: h, signal: ctrl.signal, cache: 'no-store' });
      if (resp.status !== 200) {
        $('change-state').textContent = `${resp.status}: ` + (await resp.text()).slice(0, 120);
      } else {
        $('change-state').textContent = 'live';
        changes.retry = 1000;
        if (await readEvents(resp, ctrl)) return;
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
      $('change-state').textContent = 'disconnected';
    }
    await new Promise((res) => setTimeout(res, changes.retry));
    changes.retry = Math.min(changes.retry * 2, 15000);
  }
}

// readEvents parses one stream; it returns true when the watch must stop
// (an error event that reconnecting cannot fix).
async function readEvents(resp, ctrl) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '', id = null, event = '', data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (id !== null) changes.last = Number(id);
        if (event === 'error') {
          let e = {};
          try { e = JSON.parse(data.join('\n')); } catch (x) { /* keep {} */ }
          $('change-state').textContent = `${e.code}: ${e.error}`;
          if (e.code === 'position_gone' || e.code === 'position_ahead') { changes.last = null; }
          return false; // reconnect (from now on, when the position is gone)
        }
        if (data.length) showChange(Number(id), JSON.parse(data.join('\n')));
        id = null; event = ''; data = [];
      } else if (!line.startsWith(':')) {
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'id') id = val; else if (field === 'event') event = val; else if (field === 'data') data.push(val);
      }
      if (ctrl.signal.aborted) return true;
    }
  }
}

function showChange(pos, c) {
  const feed = $('change-feed');
  const live = (c.versions || []).filter((v) => !v.deleted);
  const what = live.length === 0 ? 'deleted' : live.length === 1 ? json(live[0].value) : `${live.length} siblings`;
  feed.prepend(el('li', { 'data-testid': 'change', 'data-key': c.key, 'data-position': pos, class: 'new' },
    el('span', { class: 'muted' }, '#' + pos + ' '), el('strong', {}, c.key), ` from ${c.origin}: `, el('code', {}, what)));
  while (feed.children.length > 200) feed.lastChild.remove();
}

// ---- rule playground --------------------------------------------------------

async function loadRulesInEffect() {
  const r = await api('/v1/admin/rules/playground');
  if (r.status === 200) $('rules-text').value = r.body.rules;
  else $('pg-result').replaceChildren(el('p', { class: 'muted' }, 'Rules in effect: ' + errorText(r)));
}

function readCell(read) {
  let t = `${read.status} ${read.outcome}`;
  if (read.value !== undefined) t += ': ' + json(read.value);
  if (read.siblings) t += ': ' + read.siblings.map(json).join(', ');
  if (read.kept) t += ` (kept ${read.kept}` + (read.discarded ? `, discarded ${read.discarded.join(', ')}` : '') + ')';
  return t;
}

async function runPlayground() {
  const box = $('pg-result');
  box.replaceChildren(el('p', { class: 'muted' }, 'checking…'));
  const r = await api('/v1/admin/rules/playground', { method: 'POST', body: { rules: $('rules-text').value, key: $('pg-key').value } });
  if (r.status !== 200) { box.replaceChildren(el('p', {}, errorText(r))); return; }
  const a = r.body;
  const errors = a.findings.filter((f) => f.severity === 'error').length;
  const parts = [el('p', { 'data-testid': 'pg-verdict' },
    el('span', { class: 'badge ' + (a.ok ? 'ok' : 'error') }, a.ok ? 'a region would load this set' : `${errors} error${errors === 1 ? '' : 's'}: a region would refuse this set`),
    ` ${a.rules.length} rules, ${a.findings.length} findings`)];
  if (a.findings.length) {
    parts.push(el('ul', { 'data-testid': 'pg-findings' }, a.findings.map((f) => el('li', { 'data-severity': f.severity },
      el('span', { class: 'badge ' + f.severity }, f.severity), ' ', el('pre', {}, f.text)))));
  }
  if (a.current) {
    parts.push(el('p', {}, `Key ${a.current.key}: ${a.current.versions.length} versions here. In effect now: rule ${a.current.rule || '(none)'}, a read shows ${readCell(a.current.read)}.`));
  }
  if (a.candidate) {
    parts.push(el('p', { 'data-testid': 'pg-governs' }, `Under the pasted set: rule ${a.candidate.rule || '(none)'} governs it; a read shows ${readCell(a.candidate.read)}.`));
    parts.push(el('table', { 'data-testid': 'pg-each' },
      el('thead', {}, el('tr', {}, ['rule', 'strategy', 'match', 'a read would show', 'error'].map((h) => el('th', {}, h)))),
      el('tbody', {}, a.each.map((v) => el('tr', { class: v.governs ? 'governs' : '', 'data-testid': 'pg-rule', 'data-rule': v.rule, 'data-governs': v.governs ? 'true' : 'false' },
        el('td', {}, v.rule + (v.governs ? ' ✓' : '')), el('td', {}, v.strategy), el('td', {}, v.match),
        el('td', {}, el('pre', {}, readCell(v.read))), el('td', {}, v.error || ''))))));
  } else if ($('pg-key').value && a.current) {
    parts.push(el('p', { class: 'muted' }, 'Fix the errors to see how the pasted rules treat the key.'));
  }
  box.replaceChildren(...parts);
}

// ---- start ------------------------------------------------------------------

function refreshAll() {
  refreshDeployment();
  refreshConflicts();
}

function every(ms, f) {
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try { await f(); } catch (e) { /* shown by the next round */ } finally { busy = false; }
  }, ms);
}

document.addEventListener('DOMContentLoaded', () => {
  initToken();
  $('key-search').addEventListener('submit', (ev) => { ev.preventDefault(); listKeys(false); });
  $('key-more').addEventListener('click', () => listKeys(true));
  $('change-form').addEventListener('submit', (ev) => { ev.preventDefault(); startChanges(); });
  $('pg-run').addEventListener('click', runPlayground);
  $('pg-reset').addEventListener('click', loadRulesInEffect);
  refreshAll();
  listKeys(false);
  loadRulesInEffect();
  startChanges();
  every(1000, refreshDeployment);
  every(1000, refreshConflicts);
});
