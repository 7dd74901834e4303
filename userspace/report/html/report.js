(function () {
'use strict';

// Everything from the report is put on the page as text (textContent,
// setAttribute, createElementNS): strings from the target never become markup.
const PAGE = 200;                // table rows drawn at a time
const MAX_THREAD_SERIES = 10;    // thread lines on the chart, by peak
const POINTS_PER_SERIES = 3000;  // above this a series is drawn as per-bucket min/max
const SVGNS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f',
                 '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#8c8c8c'];
const PROCESS_COLOR = '#1d2330';
const PEAK_COLOR = '#d4008f';    // the peak's marker, and nothing else on the page
const FLAME_ROW = 18;            // px per flame graph level
const FLAME_MIN_PX = 2;          // narrower frames are not drawn (nor what they call)
const FLAME_LABEL_PX = 16;       // narrower frames carry their name in the tooltip only
const DASH = '\u2014';
const errors = [];
const threadColors = new Map();

const byId = (id) => document.getElementById(id);
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const arr = (v) => (Array.isArray(v) ? v : []);
const obj = (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {});
const str = (v) => (typeof v === 'string' ? v
                    : v === null || v === undefined ? ''
                    : typeof v === 'object' ? JSON.stringify(v) : String(v));
const num = (v) => (isNum(v) ? v : 0);
// A thread's counter: flat on the thread (as written), or under "counters".
const counter = (t, key) => (isNum(obj(t.counters)[key]) ? t.counters[key] : t[key]);

function el(tag, cls, content) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (content !== undefined && content !== null) e.textContent = String(content);
  return e;
}

function svgEl(tag, attrs, content) {
  const e = document.createElementNS(SVGNS, tag);
  if (attrs) for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
  if (content !== undefined && content !== null) e.textContent = String(content);
  return e;
}

// --- formatting ---------------------------------------------------------------
const NF = new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 });
const fmtNum = (v) => (isNum(v) ? NF.format(v) : DASH);
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

function human(b) {
  if (!isNum(b)) return DASH;
  let a = Math.abs(b);
  if (a < 1024) return `${b} B`;
  let i = 0;
  while (a >= 1024 && i < UNITS.length - 1) { a /= 1024; i++; }
  return `${b < 0 ? '-' : ''}${a.toFixed(1)} ${UNITS[i]}`;
}

function fmtSec(s) {
  if (!isNum(s)) return DASH;
  const a = Math.abs(s);
  if (a === 0) return '0 s';
  if (a < 1e-3) return `${(s * 1e6).toFixed(0)} \u00b5s`;
  if (a < 1) return `${(s * 1e3).toFixed(1)} ms`;
  if (a < 120) return `${s.toFixed(2)} s`;
  const m = Math.floor(a / 60);
  return `${s < 0 ? '-' : ''}${m} min ${(a - m * 60).toFixed(0)} s`;
}

const fmtPct = (share) => (isNum(share) ? `${(share * 100).toFixed(1)} %` : DASH);
const hex = (v) => (isNum(v) && v >= 0 ? `0x${v.toString(16)}` : '?');

// A frame is its symbol, else module+0xoffset, else its address.
function frameWhere(f) {
  if (typeof f.module === 'string' && f.module) return `${f.module}+${hex(f.offset)}`;
  return hex(f.addr);
}
// A stack's frame: an index into the report's frame table (each distinct
// frame written once), or, in reports of schema 1, the frame itself.
function frameObj(f) {
  return obj(Number.isInteger(f) ? arr(R.frames)[f] : f);
}
function frameLabel(f) {
  f = frameObj(f);
  return typeof f.symbol === 'string' && f.symbol ? f.symbol : frameWhere(f);
}
// A site or leak is named by its function, else by its innermost frame.
function siteLabel(s) {
  if (typeof s.function === 'string' && s.function) return { text: s.function, known: true };
  const st = arr(s.stack);
  return { text: st.length ? frameLabel(st[0]) : '[unknown]', known: false };
}
function stackSearchText(s) {
  const parts = [str(s.function)];
  for (const f of arr(s.stack)) { const o = frameObj(f); parts.push(str(o.symbol), str(o.module)); }
  return parts.join('\n');
}

function stackNode(frames, truncated, end) {
  const wrap = el('div', 'stack-wrap');
  const ol = el('ol', 'stack');
  for (const raw of arr(frames)) {
    const f = frameObj(raw);
    const known = typeof f.symbol === 'string' && f.symbol !== '';
    const li = el('li', 'frame');
    li.appendChild(el('span', known ? 'sym' : 'sym unknown', frameLabel(f)));
    if (known && (f.module || isNum(f.addr))) li.appendChild(el('span', 'where', frameWhere(f)));
    if (typeof f.file === 'string' && f.file)
      li.appendChild(el('span', 'where', isNum(f.line) && f.line > 0 ? `${f.file}:${f.line}` : f.file));
    ol.appendChild(li);
  }
  wrap.appendChild(ol.firstChild ? ol : el('p', 'note', 'No stack recorded.'));
  if (truncated)
    wrap.appendChild(el('p', 'note', typeof end === 'string' && end
      ? `Ended early (${end}): outer frames are missing.` : 'Ended early: outer frames are missing.'));
  return wrap;
}

// --- tables ---------------------------------------------------------------------
// Numeric cells carry the exact figure in data-value; text cells are text.
function fillCell(td, c, row, v) {
  td.dataset.col = c.key;
  if (c.render) { c.render(td, row, v); return; }
  if (c.type === 'text') {
    if (v === null || v === undefined || v === '') { td.textContent = DASH; td.classList.add('none'); }
    else td.textContent = str(v);
    if (c.mono) td.classList.add('mono');
    return;
  }
  td.classList.add('num');
  if (!isNum(v)) { td.textContent = DASH; td.classList.add('none'); return; }
  td.dataset.value = String(v);
  if (c.type === 'sec') td.textContent = fmtSec(v);
  else if (c.type === 'pct') td.textContent = fmtPct(v);
  else if (c.type === 'id') td.textContent = String(v);
  else {
    td.textContent = fmtNum(v);
    if (c.type === 'bytes' && Math.abs(v) >= 1024) td.appendChild(el('span', 'unit', human(v)));
  }
}

// A sortable, filterable table that draws PAGE rows at a time, so 30,000
// sites cost one sort, not 30,000 rows of DOM.
class PagedTable {
  constructor(o) {
    this.o = o;
    this.rows = o.rows;
    this.query = '';
    this.keys = null;
    this.view = this.rows;
    this.shown = 0;
    this.sortKey = o.sortKey || null;
    this.sortDesc = o.sortDesc !== false;
    this.rowOf = new WeakMap();  // a drawn row's element -> its data
    const base = o.id.replace(/-table$/, '');

    const controls = el('div', 'controls');
    if (o.filter) {
      const input = el('input', 'filter');
      input.type = 'search';
      input.id = `${base}-filter`;
      input.placeholder = o.filterHint || `Filter ${o.noun}`;
      input.setAttribute('aria-label', input.placeholder);
      let timer = 0;
      input.addEventListener('input', () => {
        clearTimeout(timer);
        timer = setTimeout(() => { this.query = input.value.trim().toLowerCase(); this.apply(); }, 150);
      });
      controls.appendChild(input);
    }
    this.count = el('span', 'count');
    this.count.id = `${base}-count`;
    controls.appendChild(this.count);
    o.host.appendChild(controls);

    const wrap = el('div', 'table-wrap');
    this.table = el('table', 'data');
    this.table.id = o.id;
    const thead = el('thead');
    const hr = el('tr');
    this.ths = new Map();
    for (const c of o.columns) {
      const th = el('th', c.type && c.type !== 'text' ? 'num' : null);
      th.dataset.col = c.key;
      th.scope = 'col';
      if (c.sortable === false) th.textContent = c.label;
      else {
        const b = el('button', 'sort', c.label);
        b.type = 'button';
        b.title = `Sort by ${c.label.toLowerCase()}`;
        b.addEventListener('click', () => this.sortBy(c.key));
        th.appendChild(b);
      }
      this.ths.set(c.key, th);
      hr.appendChild(th);
    }
    thead.appendChild(hr);
    this.table.appendChild(thead);
    this.tbody = el('tbody', o.detail ? 'expandable' : null);
    this.table.appendChild(this.tbody);
    wrap.appendChild(this.table);
    o.host.appendChild(wrap);

    this.more = el('button', 'more');
    this.more.type = 'button';
    this.more.id = `${base}-more`;
    this.more.addEventListener('click', () => this.renderMore());
    o.host.appendChild(this.more);
    if (o.detail) this.tbody.addEventListener('click', (ev) => this.toggle(ev));
    this.apply();
  }

  column(key) { return this.o.columns.find((c) => c.key === key); }
  value(c, row) { return c.get ? c.get(row) : row[c.key]; }

  sortBy(key) {
    if (this.sortKey === key) this.sortDesc = !this.sortDesc;
    else { this.sortKey = key; this.sortDesc = this.column(key).type !== 'text'; }
    this.apply();
  }

  apply() {
    let view = this.rows;
    if (this.query && this.o.filter) {
      if (!this.keys) this.keys = this.rows.map((r) => this.o.filter(r).toLowerCase());
      const q = this.query;
      view = this.rows.filter((r, i) => this.keys[i].includes(q));
    }
    const c = this.sortKey && this.column(this.sortKey);
    if (c) {
      const dir = this.sortDesc ? -1 : 1;
      const text = c.type === 'text';
      const keyed = view.map((r, i) => {
        const k = this.value(c, r);
        return { r, i, k: text ? str(k).toLowerCase() : k };
      });
      keyed.sort((a, b) => {
        if (text) { if (a.k !== b.k) return a.k < b.k ? -dir : dir; return a.i - b.i; }
        const na = isNum(a.k), nb = isNum(b.k);
        if (na !== nb) return na ? -1 : 1;  // missing figures last either way
        if (na && a.k !== b.k) return a.k < b.k ? -dir : dir;
        return a.i - b.i;
      });
      view = keyed.map((x) => x.r);
    }
    for (const [key, th] of this.ths) {
      if (key === this.sortKey) th.setAttribute('aria-sort', this.sortDesc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    }
    this.view = view;
    this.shown = 0;
    this.tbody.textContent = '';
    if (!view.length) {
      const tr = el('tr', 'empty');
      const td = el('td', 'note', this.rows.length ? `No ${this.o.noun} match the filter.`
                                                   : this.o.emptyText || `No ${this.o.noun}.`);
      td.colSpan = this.o.columns.length;
      tr.appendChild(td);
      this.tbody.appendChild(tr);
    }
    this.renderMore();
  }

  renderMore() {
    const end = Math.min(this.view.length, this.shown + PAGE);
    const frag = document.createDocumentFragment();
    for (let i = this.shown; i < end; i++) this.renderRow(frag, this.view[i]);
    this.tbody.appendChild(frag);
    this.shown = end;
    this.updateCount();
  }

  renderRow(frag, row) {
    const tr = el('tr', 'row');
    if (this.o.rowAttrs) this.o.rowAttrs(tr, row);
    const detail = this.o.detail ? this.o.detail(row) : null;  // null: nothing to expand
    if (detail) this.rowOf.set(tr, row);
    this.o.columns.forEach((c, ci) => {
      const td = el('td');
      fillCell(td, c, row, this.value(c, row));
      if (ci === 0 && detail) {
        const b = el('button', 'toggle', '\u25b8');
        b.type = 'button';
        b.setAttribute('aria-expanded', 'false');
        b.setAttribute('aria-label', 'Show details');
        td.insertBefore(b, td.firstChild);
      }
      tr.appendChild(td);
    });
    frag.appendChild(tr);
    if (detail) {
      const dtr = el('tr', 'detail');
      dtr.hidden = true;
      const td = el('td');
      td.colSpan = this.o.columns.length;
      td.appendChild(detail);
      dtr.appendChild(td);
      frag.appendChild(dtr);
    }
  }

  toggle(ev) {
    const tr = ev.target.closest('tr.row');
    if (!tr || !this.tbody.contains(tr)) return;
    const sel = window.getSelection();
    if (sel && !sel.isCollapsed && !ev.target.closest('button.toggle')) return;  // selecting text
    const d = tr.nextElementSibling;
    if (!d || !d.classList.contains('detail')) return;
    d.hidden = !d.hidden;
    if (!d.hidden && this.o.onOpen && !d.dataset.opened) {
      d.dataset.opened = 'true';  // drawn once, the first time it is shown
      this.o.onOpen(this.rowOf.get(tr), d.firstChild);
    }
    const b = tr.querySelector('button.toggle');
    if (b) {
      b.setAttribute('aria-expanded', String(!d.hidden));
      b.textContent = d.hidden ? '\u25b8' : '\u25be';
    }
  }

  updateCount() {
    const total = this.rows.length, matched = this.view.length, shown = this.shown;
    const c = this.count;
    c.dataset.shown = String(shown);
    c.dataset.matched = String(matched);
    c.dataset.total = String(total);
    c.textContent = !total || (!this.o.filter && total <= PAGE) ? ''
      : this.query ? `Showing ${fmtNum(shown)} of ${fmtNum(matched)} matching ${this.o.noun} (${fmtNum(total)} in all)`
      : `Showing ${fmtNum(shown)} of ${fmtNum(total)} ${this.o.noun}`;
    const left = matched - shown;
    this.more.hidden = left <= 0;
    this.more.textContent = `Show ${fmtNum(Math.min(PAGE, left))} more`;
  }
}

// --- the peak ---------------------------------------------------------------------
// One figure for the peak everywhere on the page: the report's
// (totals.peak_live_bytes, else peak.live_bytes), never the highest sample.
// "peak" is the moment and its sites: the command's peak when one process
// held memory; when several did, the largest one's own (`own`), the
// command's (over all of them) then being sampled.
function reportPeak(R) {
  const totals = obj(R.totals);
  const p = R.peak !== null && typeof R.peak === 'object' ? obj(R.peak) : null;
  const bytes = isNum(totals.peak_live_bytes) ? totals.peak_live_bytes : p && isNum(p.live_bytes) ? p.live_bytes : null;
  const exact = typeof totals.peak_live_bytes_exact === 'boolean' ? totals.peak_live_bytes_exact
    : p && typeof p.exact === 'boolean' ? p.exact : null;
  const at = p && isNum(p.t_s) && isNum(p.live_bytes) ? { t: p.t_s, bytes: p.live_bytes } : null;
  const own = at && at.bytes !== bytes ? at : null;
  return { present: p !== null, bytes, exact, t: at && !own ? at.t : null, at, own, pid: p ? p.pid : undefined,
           sites: p && Array.isArray(p.sites) ? p.sites.map(obj) : null, note: p ? str(p.note) : '' };
}

// The one sentence that says whether the peak is exact or sampled.
function peakStatement(P, interval) {
  const at = P.t !== null ? ` at ${fmtSec(P.t)}` : '';
  const head = `The peak, ${human(P.bytes)}${at},`;
  if (P.exact === true) return `${head} is exact: live bytes were counted at every allocation and free.`;
  if (P.exact === false)
    return `${head} is sampled: live bytes were read ${interval ? `every ${fmtSec(interval)}` : 'at intervals'}, ` +
           'so the true peak may have been higher between two readings.';
  return `${head} is not said to be exact or sampled in this report.`;
}

// What an older report lacks, said once in a note; the rest is drawn. The
// current writer always writes size_histogram (a peak only when it had one).
function missingParts(R) {
  if (R.mode_scope === 'system' || Array.isArray(R.size_histogram)) return [];
  const missing = [];
  if (R.peak === undefined) missing.push(['peak', 'the peak (its time and what was live then)']);
  if (!Array.isArray(R.size_histogram)) missing.push(['size_histogram', 'allocation sizes']);
  if (!isNum(obj(R.totals).temporary_count)) missing.push(['temporary_count', 'temporary counts']);
  return missing;
}

// --- summary ----------------------------------------------------------------------
function renderSummary(R, variablesCount) {
  const tool = obj(R.tool), target = obj(R.target), totals = obj(R.totals);
  const dropped = obj(R.dropped);
  const exe = R.mode_scope === 'system' ? 'system-wide' : str(target.exe) || str(target.comm);
  document.title = exe ? `memscope-trace: ${exe}` : 'memscope-trace report';
  const line = byId('target-line');
  line.appendChild(el('span', 'exe', exe || 'unknown target'));
  if (isNum(target.pid)) line.appendChild(el('span', 'pid', `pid ${target.pid}`));
  if (tool.version !== undefined) byId('tool').textContent = `${str(tool.name) || 'memscope-trace'} ${str(tool.version)}`;

  const host = byId('summary');
  const group = (title) => {
    host.appendChild(el('h3', null, title));
    const cards = el('div', 'cards');
    host.appendChild(cards);
    return cards;
  };
  const card = (parent, label, field, value, kind, cls) => {
    const c = el('div', cls ? `card ${cls}` : 'card');
    c.appendChild(el('div', 'label', label));
    const v = el('div', kind === 'mono' ? 'value mono' : 'value');
    v.dataset.field = field;
    if (kind === 'text' || kind === 'mono') v.textContent = str(value) || DASH;
    else if (!isNum(value)) v.textContent = DASH;
    else {
      v.dataset.value = String(value);
      v.textContent = kind === 'sec' ? fmtSec(value) : kind === 'id' ? String(value) : fmtNum(value);
      if (kind === 'bytes' && Math.abs(value) >= 1024) v.appendChild(el('span', 'unit', human(value)));
    }
    c.appendChild(v);
    parent.appendChild(c);
    return c;
  };

  const t = group('Target');
  card(t, 'Executable', 'target.exe', target.exe, 'mono', 'wide');
  card(t, 'Command', 'target.comm', target.comm, 'mono');
  card(t, 'PID', 'target.pid', target.pid, 'id');
  card(t, 'Exit code', 'target.exit_code', target.exit_code, 'id');
  card(t, 'Duration', 'duration_s', R.duration_s, 'sec');
  const mode = card(t, 'Mode', 'mode', R.mode, 'text');
  if (R.mode_source) mode.appendChild(el('div', 'sub', `from ${str(R.mode_source)}`));

  const a = group('Totals');
  card(a, 'Allocations', 'totals.alloc_count', totals.alloc_count, 'int');
  card(a, 'Bytes allocated', 'totals.alloc_bytes', totals.alloc_bytes, 'bytes');
  card(a, 'Frees', 'totals.free_count', totals.free_count, 'int');
  card(a, 'Bytes freed', 'totals.free_bytes', totals.free_bytes, 'bytes');
  card(a, 'Live allocations', 'totals.live_count', totals.live_count, 'int');
  card(a, 'Live bytes', 'totals.live_bytes', totals.live_bytes, 'bytes');
  const peak = card(a, 'Peak live bytes', 'totals.peak_live_bytes', PEAK.bytes, 'bytes');
  peak.id = 'summary-peak';
  if (PEAK.t !== null) peak.appendChild(el('div', 'sub', `at ${fmtSec(PEAK.t)}`));
  if (isNum(totals.temporary_count)) {
    const tmp = card(a, 'Temporary allocations', 'totals.temporary_count', totals.temporary_count, 'int');
    if (isNum(totals.alloc_count) && totals.alloc_count > 0)
      tmp.appendChild(el('div', 'sub', `${fmtPct(totals.temporary_count / totals.alloc_count)} of allocations`));
  }
  const lost = isNum(dropped.events) && dropped.events > 0;
  const d = card(a, 'Dropped events', 'dropped.events', dropped.events, 'int', lost ? 'warn' : null);
  for (const [k, v] of Object.entries(obj(dropped.reasons))) d.appendChild(el('div', 'sub', `${k}: ${fmtNum(v)}`));
  if (isNum(dropped.untracked_allocations) && dropped.untracked_allocations > 0)
    card(a, 'Untracked allocations', 'dropped.untracked_allocations', dropped.untracked_allocations, 'int', 'warn');
  if (variablesCount > 0) card(a, 'Variable records', 'variables', variablesCount, 'int');
  if (isNum(PEAK.bytes)) {
    const p = el('p', 'note', peakStatement(PEAK, obj(R.timeline).interval_s));
    p.id = 'peak-statement';
    if (PEAK.exact !== null) p.dataset.exact = String(PEAK.exact);
    host.appendChild(p);
  }
  const missing = missingParts(R);
  if (missing.length) {
    const names = missing.map((m) => m[1]);
    const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}` : names[0];
    const p = el('p', 'note older', `This report was written by an older memscope-trace and lacks ${list}: ` +
                                    'those parts are left out, the rest is drawn.');
    p.id = 'older-report';
    p.dataset.missing = missing.map((m) => m[0]).join(' ');
    host.appendChild(p);
  }

  if (R.stacks !== undefined) {
    const st = obj(R.stacks);
    const s = group('Stacks');
    card(s, 'Collected', 'stacks.enabled', st.enabled === true ? 'yes' : st.enabled === false ? 'no' : '', 'text');
    card(s, 'Depth', 'stacks.depth', st.depth, 'int');
    card(s, 'Distinct stacks', 'stacks.distinct', st.distinct, 'int');
    const tr = card(s, 'Truncated', 'stacks.truncated_share', st.truncated_share, 'pct');
    if (isNum(st.truncated_share)) tr.querySelector('.value').textContent = `${(st.truncated_share * 100).toFixed(1)} %`;
    if (isNum(st.without_stack) && st.without_stack > 0)
      card(s, 'Allocations without a stack', 'stacks.without_stack', st.without_stack, 'int');
    if (isNum(st.outstanding_without_stack) && st.outstanding_without_stack > 0)
      card(s, 'Live without a stack', 'stacks.outstanding_without_stack', st.outstanding_without_stack, 'int');
    if (st.note) host.appendChild(el('p', 'note', str(st.note)));
  }

  const warnings = arr(R.warnings).map(str).filter((w) => w);
  if (R.schema !== 'memscope-trace/1' && R.schema !== 'memscope-trace/2')
    warnings.unshift(`Unexpected schema ${JSON.stringify(str(R.schema))}: this page reads memscope-trace/1 and /2.`);
  if (warnings.length) {
    const box = el('div', 'warnings');
    box.id = 'warnings';
    box.appendChild(el('strong', null, warnings.length === 1 ? 'Warning' : `${warnings.length} warnings`));
    const ul = el('ul');
    for (const w of warnings) ul.appendChild(el('li', null, w));
    box.appendChild(ul);
    host.appendChild(box);
  }
}

// --- timeline chart ------------------------------------------------------------------
function maxOver(values, i0, i1) {
  let p = 0;
  for (let i = Math.max(0, i0); i <= i1 && i < values.length; i++) {
    const v = values[i];
    if (isNum(v) && v > p) p = v;
  }
  return p;
}
const peakOf = (values) => maxOver(values, 0, values.length - 1);

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

// Byte axis in one binary unit, chosen by the top value.
function byteAxis(max) {
  let unit = 1, u = 0;
  while (max / unit >= 1024 && u < UNITS.length - 1) { unit *= 1024; u++; }
  const step = Math.max(1, niceStep(max / unit / 4) * unit);
  const top = Math.max(step, Math.ceil(max / step - 1e-9) * step);
  const label = (v) => `${parseFloat((v / unit).toFixed(2))} ${UNITS[u]}`;
  return { step, top, label };
}

function countAxis(max) {
  const step = Math.max(1, niceStep(max / 4));
  return { step, top: Math.max(step, Math.ceil(max / step - 1e-9) * step), label: fmtNum };
}

function timeAxis(x0, x1) {
  const step = niceStep((x1 - x0) / 8);
  const dec = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const ticks = [];
  for (let k = Math.ceil(x0 / step - 1e-9); k * step <= x1 + step * 1e-9; k++) ticks.push(k * step);
  return { ticks, label: (v) => `${v.toFixed(dec)} s` };
}

// The samples that draw [x0, x1]: those inside, and one either side so the
// lines reach the edges (the plot clips them). The times are ascending.
function visibleRange(t, x0, x1) {
  let i0 = 0, i1 = t.length - 1;
  for (let i = 0; i < t.length; i++) if (isNum(t[i]) && t[i] < x0) i0 = i;
  for (let i = t.length - 1; i >= 0; i--) if (isNum(t[i]) && t[i] > x1) i1 = i;
  let in0 = t.length, in1 = -1;  // strictly inside: what the y axis is scaled to
  for (let i = i0; i <= i1; i++) if (isNum(t[i]) && t[i] >= x0 && t[i] <= x1) { in0 = Math.min(in0, i); in1 = i; }
  return { i0, i1, in0, in1 };
}

// One path over samples [i0, i1]; a missing sample starts a new subpath.
// Long series are drawn as the min and max of each bucket, which keeps every peak.
function seriesPath(t, values, sx, sy, i0, i1) {
  const n = Math.min(t.length, values.length, i1 + 1);
  const out = [];
  let seg = 0;
  const end = () => { if (seg === 1) out.push('l0 0'); seg = 0; };
  const point = (i) => {
    const v = values[i], x = t[i];
    if (!isNum(v) || !isNum(x)) { end(); return; }
    out.push(`${seg ? 'L' : 'M'}${sx(x).toFixed(1)} ${sy(v).toFixed(1)}`);
    seg++;
  };
  if (n - i0 <= POINTS_PER_SERIES) {
    for (let i = i0; i < n; i++) point(i);
  } else {
    const per = Math.ceil((n - i0) / (POINTS_PER_SERIES / 2));
    for (let b = i0; b < n; b += per) {
      let lo = -1, hi = -1;
      for (let i = b; i < Math.min(n, b + per); i++) {
        const v = values[i];
        if (!isNum(v) || !isNum(t[i])) continue;
        if (lo < 0 || v < values[lo]) lo = i;
        if (hi < 0 || v > values[hi]) hi = i;
      }
      if (lo < 0) { end(); continue; }
      if (lo === hi) point(lo);
      else if (lo < hi) { point(lo); point(hi); }
      else { point(hi); point(lo); }
    }
  }
  end();
  return out.join('');
}

function nearestIndex(t, v) {
  let lo = 0, hi = t.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (t[mid] < v) lo = mid; else hi = mid;
  }
  return Math.abs(t[hi] - v) < Math.abs(t[lo] - v) ? hi : lo;
}

const CHART = { W: 1200, H: 360, M: { l: 84, r: 18, t: 22, b: 32 } };

function chartAxes(svg, g, xa, ya) {
  const grid = svgEl('g', { class: 'grid' });
  const axis = svgEl('g', { class: 'axis' });
  const { W, M } = CHART;
  for (let k = 0; k * ya.step <= ya.top * (1 + 1e-9); k++) {
    const v = k * ya.step, y = g.sy(v).toFixed(1);
    if (k) grid.appendChild(svgEl('line', { x1: M.l, x2: W - M.r, y1: y, y2: y }));
    axis.appendChild(svgEl('text', { x: M.l - 8, y, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, ya.label(v)));
  }
  for (const v of xa.ticks) {
    const x = g.sx(v).toFixed(1);
    axis.appendChild(svgEl('line', { x1: x, x2: x, y1: M.t + g.ph, y2: M.t + g.ph + 5 }));
    axis.appendChild(svgEl('text', { x, y: M.t + g.ph + 18, 'text-anchor': 'middle' }, xa.label(v)));
  }
  axis.appendChild(svgEl('line', { x1: M.l, x2: M.l, y1: M.t, y2: M.t + g.ph }));
  axis.appendChild(svgEl('line', { x1: M.l, x2: W - M.r, y1: M.t + g.ph, y2: M.t + g.ph }));
  svg.appendChild(grid);
  svg.appendChild(axis);
}

function chartModes(svg, g, modeChanges, x0, x1) {
  const { M } = CHART;
  const modes = svgEl('g', { class: 'modes' });
  for (const raw of modeChanges) {
    const mc = obj(raw);
    if (!isNum(mc.t_s) || mc.t_s < x0 || mc.t_s > x1) continue;
    const x = g.sx(mc.t_s).toFixed(1);
    const grp = svgEl('g', { class: 'mode-change', 'data-t': mc.t_s });
    grp.appendChild(svgEl('title', null, `${fmtSec(mc.t_s)}: ${str(mc.from)} \u2192 ${str(mc.to)}` +
                                         (mc.reason ? ` (${str(mc.reason)})` : '')));
    grp.appendChild(svgEl('line', { class: 'mode-line', x1: x, x2: x, y1: M.t, y2: M.t + g.ph }));
    grp.appendChild(svgEl('text', { class: 'mode-label', x: Number(x) + 4, y: M.t - 6 }, `\u2192 ${str(mc.to)}`));
    modes.appendChild(grp);
  }
  svg.appendChild(modes);
}

// The process peak: a dot at (peak.t_s, peak.live_bytes) with its figure.
function chartPeak(svg, g, marker) {
  const { W, M } = CHART;
  const cx = g.sx(marker.t), cy = g.sy(marker.bytes);
  const grp = svgEl('g', { id: 'peak-marker', class: 'peak-marker', 'data-t': marker.t, 'data-value': marker.bytes });
  const text = `${marker.what} ${human(marker.bytes)} at ${fmtSec(marker.t)}`;
  grp.appendChild(svgEl('title', null, text));
  grp.appendChild(svgEl('line', { x1: cx.toFixed(1), x2: cx.toFixed(1), y1: cy.toFixed(1), y2: M.t + g.ph,
                                  stroke: PEAK_COLOR, 'stroke-width': 1.2, 'stroke-dasharray': '3 3' }));
  grp.appendChild(svgEl('circle', { id: 'peak-dot', cx: cx.toFixed(1), cy: cy.toFixed(1), r: 6, fill: PEAK_COLOR,
                                    stroke: '#fff', 'stroke-width': 1.5 }));
  const right = cx > W - M.r - 320;  // keep the label inside the plot
  const below = cy < M.t + 18;
  const label = svgEl('text', { id: 'peak-label', class: 'peak-label', x: (right ? cx - 10 : cx + 10).toFixed(1),
                                 y: (below ? cy + 18 : cy - 9).toFixed(1), 'text-anchor': right ? 'end' : 'start' }, text);
  label.style.fill = PEAK_COLOR;  // over the stylesheet's grey for chart text
  grp.appendChild(label);
  svg.appendChild(grp);
}

// The hover read-out: the nearest sample's figures.
function chartHover(c, svg, g, wrap, overlay, cursor) {
  const { W, M } = CHART;
  const tip = el('div', 'tip');
  tip.hidden = true;
  wrap.appendChild(tip);
  const times = c.t.map((v) => (isNum(v) ? v : NaN));
  overlay.addEventListener('mousemove', (ev) => {
    const r = svg.getBoundingClientRect();
    const xv = c.x0 + ((ev.clientX - r.left) * W / r.width - M.l) / g.pw * (c.x1 - c.x0);
    const i = nearestIndex(times, xv);
    if (!isNum(times[i]) || times[i] < c.x0 || times[i] > c.x1) return;
    const x = g.sx(times[i]).toFixed(1);
    cursor.setAttribute('x1', x);
    cursor.setAttribute('x2', x);
    cursor.setAttribute('visibility', 'visible');
    tip.textContent = '';
    tip.appendChild(el('div', null, `t = ${fmtSec(times[i])}`));
    for (const s of c.series) {
      const row = el('div');
      const sw = el('span', 'swatch');
      sw.style.backgroundColor = s.color;
      row.appendChild(sw);
      row.appendChild(document.createTextNode(`${s.label}: ${human(s.values[i])}`));
      tip.appendChild(row);
    }
    tip.hidden = false;
    const wr = wrap.getBoundingClientRect();
    const px = ev.clientX - wr.left;
    tip.style.left = `${px + 14 + tip.offsetWidth > wr.width ? Math.max(0, px - 14 - tip.offsetWidth) : px + 14}px`;
  });
  overlay.addEventListener('mouseleave', () => { tip.hidden = true; cursor.setAttribute('visibility', 'hidden'); });
}

// Zoom: drag across the plot to see that span, or turn the wheel over it.
function chartZoom(c, svg, g, overlay) {
  const { W, M } = CHART;
  const toView = (clientX) => {
    const r = svg.getBoundingClientRect();
    return Math.max(M.l, Math.min(W - M.r, (clientX - r.left) * W / r.width));
  };
  const toTime = (vx) => c.x0 + (vx - M.l) / g.pw * (c.x1 - c.x0);
  const sel = svgEl('rect', { class: 'zoom-sel', x: 0, y: M.t, width: 0, height: g.ph, visibility: 'hidden' });
  svg.insertBefore(sel, overlay);
  overlay.addEventListener('mousedown', (ev) => {
    if (ev.button !== 0) return;
    ev.preventDefault();
    const start = toView(ev.clientX);
    const move = (e) => {
      const now = toView(e.clientX);
      sel.setAttribute('x', Math.min(start, now).toFixed(1));
      sel.setAttribute('width', Math.abs(now - start).toFixed(1));
      sel.setAttribute('visibility', 'visible');
    };
    const up = (e) => {
      window.removeEventListener('mousemove', move);
      window.removeEventListener('mouseup', up);
      sel.setAttribute('visibility', 'hidden');
      const end = toView(e.clientX);
      if (Math.abs(end - start) >= 4) c.onZoom(toTime(Math.min(start, end)), toTime(Math.max(start, end)));
    };
    window.addEventListener('mousemove', move);
    window.addEventListener('mouseup', up);
  });
  overlay.addEventListener('wheel', (ev) => {
    if (!ev.deltaY) return;
    ev.preventDefault();
    const at = toTime(toView(ev.clientX));
    const f = ev.deltaY < 0 ? 0.8 : 1.25;
    c.onZoom(at - (at - c.x0) * f, at + (c.x1 - at) * f);
  }, { passive: false });
}

// The SVG chart of c.series over [c.x0, c.x1], with the mode changes as
// vertical lines, the peak marked, a hover read-out and zoom.
function drawChart(c) {
  const { W, H, M } = CHART;
  const range = visibleRange(c.t, c.x0, c.x1);
  let ymax = 0;
  for (const s of c.series) ymax = Math.max(ymax, maxOver(s.values, range.in0, range.in1));
  const marker = c.marker && c.marker.t >= c.x0 && c.marker.t <= c.x1 ? c.marker : null;
  if (marker) ymax = Math.max(ymax, marker.bytes);
  const ya = byteAxis(ymax > 0 ? ymax : 1);
  const xa = timeAxis(c.x0, c.x1);
  const g = { pw: W - M.l - M.r, ph: H - M.t - M.b };
  g.sx = (v) => M.l + (v - c.x0) / (c.x1 - c.x0) * g.pw;
  g.sy = (v) => M.t + g.ph - v / ya.top * g.ph;

  const svg = svgEl('svg', { id: 'timeline-chart', class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
                             'aria-label': 'Live bytes over time', 'data-x0': c.x0, 'data-x1': c.x1,
                             'data-zoomed': String(c.zoomed) });
  svg.appendChild(svgEl('title', null, 'Live bytes over time'));
  const clip = svgEl('clipPath', { id: 'timeline-clip' });
  clip.appendChild(svgEl('rect', { x: M.l, y: M.t - 1, width: g.pw, height: g.ph + 2 }));
  svg.appendChild(clip);
  chartAxes(svg, g, xa, ya);

  const lines = svgEl('g', { class: 'lines', 'clip-path': 'url(#timeline-clip)' });
  for (const s of c.series.slice().reverse()) {  // the process line on top
    const p = svgEl('path', { class: 'series', 'data-series': s.key,
                              d: seriesPath(c.t, s.values, g.sx, g.sy, range.i0, range.i1),
                              fill: 'none', stroke: s.color, 'stroke-width': s.width,
                              'stroke-linejoin': 'round', 'stroke-linecap': 'round' });
    p.appendChild(svgEl('title', null, s.label));
    lines.appendChild(p);
  }
  svg.appendChild(lines);

  const cursor = svgEl('line', { class: 'cursor', x1: 0, x2: 0, y1: M.t, y2: M.t + g.ph, visibility: 'hidden' });
  svg.appendChild(cursor);
  const overlay = svgEl('rect', { class: 'overlay', x: M.l, y: M.t, width: g.pw, height: g.ph, fill: 'transparent' });
  svg.appendChild(overlay);
  chartModes(svg, g, c.modeChanges, c.x0, c.x1);
  if (marker) chartPeak(svg, g, marker);

  const wrap = el('div', 'chart-wrap');
  wrap.appendChild(svg);
  chartHover(c, svg, g, wrap, overlay, cursor);
  chartZoom(c, svg, g, overlay);
  return wrap;
}

function timelineSeries(R, tl) {
  // A thread's peak is the report's figure for it; the highest sample only
  // when the report does not list the thread.
  const reported = new Map();
  for (const raw of arr(R.threads)) {
    const th = obj(raw), p = counter(th, 'peak_live_bytes');
    if (isNum(p)) reported.set(str(th.tid), Math.max(p, reported.get(str(th.tid)) || 0));
  }
  const threads = arr(tl.threads).map((raw, i) => {
    const th = obj(raw);
    const values = arr(th.live_bytes);
    const tid = str(th.tid);
    return { tid, name: str(th.name), values, peak: reported.has(tid) ? reported.get(tid) : peakOf(values), order: i };
  });
  threads.sort((a, b) => (b.peak - a.peak) || (a.order - b.order));
  const drawn = threads.slice(0, MAX_THREAD_SERIES);
  const series = [];
  if (Array.isArray(tl.process_live_bytes)) {
    const v = tl.process_live_bytes;
    series.push({ key: 'process', label: 'process', values: v, color: PROCESS_COLOR,
                  peak: isNum(PEAK.bytes) ? PEAK.bytes : peakOf(v), width: 2.5 });
  }
  drawn.forEach((th, i) => {
    const color = PALETTE[i % PALETTE.length];
    threadColors.set(th.tid, color);
    series.push({ key: `tid:${th.tid}`, label: `${th.name || 'thread'} [${th.tid}]`, values: th.values,
                  color, peak: th.peak, width: 1.5 });
  });
  return { series, hidden: threads.length - drawn.length };
}

function timelineLegend(host, series) {
  const legend = el('div', 'legend');
  legend.id = 'timeline-legend';
  for (const s of series) {
    const item = el('span', 'legend-item');
    item.dataset.series = s.key;
    const sw = el('span', 'swatch');
    sw.style.backgroundColor = s.color;
    item.appendChild(sw);
    item.appendChild(el('span', 'legend-label', s.label));
    const peak = el('span', 'legend-peak', `peak ${human(s.peak)}`);
    if (isNum(s.peak)) peak.dataset.value = String(s.peak);
    item.appendChild(peak);
    legend.appendChild(item);
  }
  host.appendChild(legend);
}

function renderTimeline(R) {
  const host = byId('timeline-body');
  const tl = obj(R.timeline);
  const t = arr(tl.t_s);
  let x0 = Infinity, x1 = -Infinity;
  for (const v of t) if (isNum(v)) { if (v < x0) x0 = v; if (v > x1) x1 = v; }
  if (x0 > x1) {
    host.appendChild(el('p', 'note no-samples', R.timeline === undefined
      ? 'No samples: this report has no timeline.' : 'No samples: the timeline is empty.'));
    return;
  }
  const interval = isNum(tl.interval_s) && tl.interval_s > 0 ? tl.interval_s : null;
  const { series, hidden } = timelineSeries(R, tl);
  const hasProcess = series.length > 0 && series[0].key === 'process';
  const marker = !hasProcess || !PEAK.at ? null
    : { t: PEAK.at.t, bytes: PEAK.at.bytes, what: PEAK.own ? `process ${str(PEAK.pid)}'s peak` : 'peak' };
  x0 = Math.min(0, x0, marker ? marker.t : 0);
  if (marker) x1 = Math.max(x1, marker.t);
  if (x1 <= x0) x1 = x0 + (interval || 1);
  const full = { x0, x1 };

  const caption = [`${fmtNum(t.length)} samples`];
  if (interval) caption.push(`every ${fmtSec(interval)}`);
  caption.push('process and the threads with the highest peaks');
  const controls = el('div', 'controls');
  controls.appendChild(el('span', 'note', `${caption.join(', ')}. Drag across the chart or turn the wheel over it to zoom.`));
  const reset = el('button', 'small', 'Reset zoom');
  reset.type = 'button';
  reset.id = 'timeline-reset';
  const slot = el('div', 'chart-slot');
  const view = { x0, x1, withProcess: true };
  const draw = () => {
    slot.textContent = '';
    slot.appendChild(drawChart({ t, x0: view.x0, x1: view.x1, modeChanges: arr(R.mode_changes),
                                 series: view.withProcess ? series : series.filter((s) => s.key !== 'process'),
                                 marker: view.withProcess ? marker : null, onZoom: zoom,
                                 zoomed: view.x0 !== full.x0 || view.x1 !== full.x1 }));
    reset.disabled = view.x0 === full.x0 && view.x1 === full.x1;
  };
  function zoom(a, b) {
    const least = Math.max((full.x1 - full.x0) / 1e4, (interval || 0) / 4, 1e-9);
    a = Math.max(full.x0, a);
    b = Math.min(full.x1, b);
    if (b - a < least) { const mid = (a + b) / 2; a = Math.max(full.x0, mid - least / 2); b = Math.min(full.x1, a + least); }
    view.x0 = a;
    view.x1 = b;
    draw();
  }
  reset.addEventListener('click', () => zoom(full.x0, full.x1));
  if (hasProcess && series.length > 1) {
    // The process line is the sum: without it, the threads get the whole height.
    const label = el('label', 'check');
    const box = el('input');
    box.type = 'checkbox';
    box.id = 'timeline-threads-only';
    box.addEventListener('change', () => { view.withProcess = !box.checked; draw(); });
    label.appendChild(box);
    label.appendChild(document.createTextNode(' scale to the threads (hide the process line)'));
    controls.appendChild(label);
  }
  controls.appendChild(reset);
  host.appendChild(controls);
  host.appendChild(slot);
  draw();
  timelineLegend(host, series);
  if (hidden > 0) {
    const p = el('p', 'note', `${fmtNum(hidden)} more ${hidden === 1 ? 'thread' : 'threads'} not drawn ` +
                              `(the ${MAX_THREAD_SERIES} with the highest peak are).`);
    p.id = 'timeline-hidden';
    p.dataset.value = String(hidden);
    host.appendChild(p);
  }
}

// --- sections -------------------------------------------------------------------------
function renderModes(R) {
  const host = byId('modes-body');
  const rows = arr(R.mode_changes).map(obj);
  new PagedTable({
    host, id: 'modes-table', noun: 'mode changes', rows, sortKey: 't_s', sortDesc: false,
    emptyText: R.mode ? `No mode changes: ${str(R.mode)} throughout.` : 'No mode changes.',
    columns: [
      { key: 't_s', label: 'Time', type: 'sec' },
      { key: 'from', label: 'From', type: 'text' },
      { key: 'to', label: 'To', type: 'text' },
      { key: 'reason', label: 'Reason', type: 'text' },
    ],
  });
}

function renderFunction(td, row) {
  const lab = siteLabel(row);
  td.appendChild(el('span', lab.known ? 'fn' : 'fn unknown', lab.text));
  if (row.truncated === true) td.appendChild(el('span', 'badge', 'truncated'));
  if (typeof row.expected === 'string' && row.expected) {
    const b = el('span', 'badge expected', 'expected');
    b.title = row.expected;
    td.appendChild(b);
  }
}
const functionColumn = { key: 'function', label: 'Function', type: 'text', get: (s) => siteLabel(s).text, render: renderFunction };

function renderSites(R) {
  const host = byId('sites-body');
  const stacks = obj(R.stacks);
  if (!Array.isArray(R.sites)) {
    host.appendChild(el('p', 'note', stacks.enabled === false
      ? 'Stacks were not collected, so there are no allocation sites.' : 'This report has no allocation sites.'));
    return;
  }
  host.appendChild(el('p', 'note', 'Where memory is allocated, by call stack. Click a row for its stack and sizes.'));
  const rows = R.sites.map(obj);
  const columns = [
    functionColumn,
    { key: 'alloc_count', label: 'Allocations', type: 'int' },
    { key: 'alloc_bytes', label: 'Bytes', type: 'bytes' },
    { key: 'live_count', label: 'Live', type: 'int' },
    { key: 'live_bytes', label: 'Live bytes', type: 'bytes' },
  ];
  if (rows.some((s) => isNum(s.temporary_count))) columns.push({ key: 'temporary_count', label: 'Temporaries', type: 'int' });
  new PagedTable({
    host, id: 'sites-table', noun: 'sites', rows, sortKey: 'alloc_bytes',
    filter: stackSearchText, filterHint: 'Filter by function, symbol or module',
    rowAttrs: (tr, s) => { if (s.id !== undefined && s.id !== null) tr.dataset.id = str(s.id); },
    detail: (s) => stackNode(s.stack, s.truncated === true, s.end),
    onOpen: siteSizes,
    columns,
  });
}

// At most `limit` items inline; the rest are counted (all are in the details).
function inlineList(td, items, limit, render) {
  items.slice(0, limit).forEach((it, i) => {
    if (i) td.appendChild(document.createTextNode(', '));
    render(td, it);
  });
  if (items.length > limit) td.appendChild(el('span', 'list-more', ` +${fmtNum(items.length - limit)} more`));
  if (!items.length) { td.textContent = DASH; td.classList.add('none'); }
}

function leakDetail(l) {
  const d = el('div', 'leak-detail');
  if (typeof l.expected === 'string' && l.expected)
    d.appendChild(el('p', 'note', `Expected: ${l.expected}`));
  d.appendChild(el('h4', null, 'Stack'));
  d.appendChild(stackNode(l.stack, l.truncated === true, l.end));
  const threads = arr(l.threads).map(obj);
  if (threads.length) {
    d.appendChild(el('h4', null, 'Threads'));
    const ul = el('ul', 'plain');
    for (const t of threads)
      ul.appendChild(el('li', null, `${str(t.name) || 'thread'} [${str(t.tid)}]: ${fmtNum(t.live_count)} live, ${human(t.live_bytes)}`));
    d.appendChild(ul);
  }
  const vars = arr(l.variables).map(obj);
  if (vars.length) {
    d.appendChild(el('h4', null, 'Variables'));
    const ul = el('ul', 'plain');
    for (const v of vars)
      ul.appendChild(el('li', null, `${str(v.name) || '?'}${v.type ? ` (${str(v.type)})` : ''}: ${fmtNum(v.count)} live, ${human(v.bytes)}`));
    d.appendChild(ul);
  }
  return d;
}

function renderLeaks(R) {
  const host = byId('leaks-body');
  if (!Array.isArray(R.leaks)) {
    host.appendChild(el('p', 'note', 'This report has no leak analysis.'));
    return;
  }
  // --min-age: blocks younger than it at the end are the working set, not
  // leaks: a leak lists its older blocks, one with none is left out.
  const minAge = num(obj(R.stacks).leak_min_age_s);
  let youngCount = 0, youngBytes = 0;
  const leaks = [];
  for (const raw of R.leaks) {
    const l = obj(raw);
    const yc = Math.min(num(l.young_count), num(l.live_count)), yb = Math.min(num(l.young_bytes), num(l.live_bytes));
    const isExpected = typeof l.expected === 'string' && l.expected;
    if (!isExpected) { youngCount += yc; youngBytes += yb; }
    if (!isExpected && yc > 0) {
      if (yc >= num(l.live_count)) continue;
      leaks.push(Object.assign({}, l, { live_count: num(l.live_count) - yc, live_bytes: num(l.live_bytes) - yb }));
    } else {
      leaks.push(l);
    }
  }
  const expected = leaks.filter((l) => typeof l.expected === 'string' && l.expected).length;
  host.appendChild(el('p', 'note', 'Allocations still live at the end, by call stack. Click a row for its stack, threads and variables.' +
    (expected ? ` ${expected === 1 ? 'One of them is' : `${fmtNum(expected)} of them are`} expected: kept by the runtime for the process's lifetime by design.` : '')));
  if (youngCount > 0) {
    const young = el('p', 'note', `${fmtNum(youngCount)} blocks (${human(youngBytes)}) younger than ${minAge} s at the end are not listed: the working set (--min-age).`);
    young.id = 'young-blocks';
    host.appendChild(young);
  }
  const search = (l) => [stackSearchText(l), ...arr(l.threads).map((t) => str(obj(t).name)),
                         ...arr(l.variables).map((v) => str(obj(v).name))].join('\n');
  new PagedTable({
    host, id: 'leaks-table', noun: 'leaks', rows: leaks, sortKey: 'live_bytes',
    filter: search, filterHint: 'Filter by function, module, thread or variable',
    emptyText: 'No leaks: nothing was live at the end.',
    rowAttrs: (tr, l) => {
      if (l.id !== undefined && l.id !== null) tr.dataset.id = str(l.id);
      if (typeof l.expected === 'string' && l.expected) tr.dataset.expected = 'true';
    },
    detail: leakDetail,
    columns: [
      functionColumn,
      { key: 'live_count', label: 'Live', type: 'int' },
      { key: 'live_bytes', label: 'Live bytes', type: 'bytes' },
      { key: 'oldest_age_s', label: 'Oldest', type: 'sec' },
      { key: 'threads', label: 'Threads', type: 'text', sortable: false, render: (td, l) => {
        inlineList(td, arr(l.threads).map(obj), 3, (cell, t) => {
          cell.appendChild(el('span', 'tname', str(t.name) || 'thread'));
          cell.appendChild(el('span', 'tid', ` [${str(t.tid)}]`));
        });
      } },
      { key: 'variables', label: 'Variables', type: 'text', sortable: false, render: (td, l) => {
        const names = [...new Set(arr(l.variables).map((v) => str(obj(v).name) || '?'))];
        inlineList(td, names, 4, (cell, n) => cell.appendChild(el('span', 'vname mono', n)));
      } },
    ],
  });
}

function renderVariables(R, variablesCount) {
  const host = byId('variables-body');
  const rows = arr(R.variable_summary).map(obj);
  if (variablesCount > 0)
    host.appendChild(el('p', 'note', `Tracked variables by name and type; the ${fmtNum(variablesCount)} individual records are in the JSON report.`));
  new PagedTable({
    host, id: 'variables-table', noun: 'variables', rows, sortKey: 'bytes',
    filter: rows.length > 10 ? (v) => `${str(v.name)}\n${str(v.type)}` : null, filterHint: 'Filter by name or type',
    emptyText: 'No tracked variables.',
    columns: [
      { key: 'name', label: 'Name', type: 'text', mono: true },
      { key: 'type', label: 'Type', type: 'text', mono: true },
      { key: 'count', label: 'Count', type: 'int' },
      { key: 'bytes', label: 'Bytes', type: 'bytes' },
      { key: 'live_count', label: 'Live', type: 'int' },
      { key: 'live_bytes', label: 'Live bytes', type: 'bytes' },
    ],
  });
}

// -a: the machine's processes with the kernel's figures, its counts and the
// OOM kills; hidden in a report of one command.
const memoryColumn = (key, label, type) => ({ key, label, type: type || 'bytes', get: (p) => obj(p.memory)[key] });
const PROCESS_FLAGS = [['heap_traced', 'heap-traced'], ['exited', 'exited'], ['oom_killed', 'OOM']];

function renderFlags(td, p) {
  const on = PROCESS_FLAGS.filter(([key]) => p[key] === true);
  for (const [, word] of on) td.appendChild(el('span', word === 'OOM' ? 'badge warn' : 'badge', word));
  if (p.heap_traced === true && typeof p.mode === 'string' && p.mode && p.mode !== 'normal')
    td.appendChild(el('span', 'badge warn', p.mode));
  if (!on.length) { td.textContent = DASH; td.classList.add('none'); }
}

function renderSystemCounts(host, s) {
  const counts = `${fmtNum(s.processes_seen)} processes seen: ${fmtNum(s.births)} born, ${fmtNum(s.execs)} exec'd, ` +
                 `${fmtNum(s.exits)} exited, ${fmtNum(s.oom_kills)} killed by the OOM killer, ` +
                 `${fmtNum(s.not_listed)} exited ones not listed`;
  const p = el('p', 'note', isNum(s.not_listed) && s.not_listed > 0
    ? `${counts} (the largest anonymous peak among them ${human(s.not_listed_peak_rss_anon_bytes)}).` : `${counts}.`);
  p.id = 'system-counts';
  host.appendChild(p);
  const selectors = arr(s.heap_selectors).map(str);
  if (selectors.length) host.appendChild(el('p', 'note', `Heap traced by: ${selectors.join(' ')}`));
}

function renderProcesses(R) {
  if (R.mode_scope !== 'system') return;
  byId('processes-section').hidden = false;
  byId('processes-link').hidden = false;
  const host = byId('processes-body');
  renderSystemCounts(host, obj(R.system));
  const rows = arr(R.processes).map(obj);
  new PagedTable({
    host, id: 'processes-table', noun: 'processes', rows, sortKey: 'peak_rss_anon_bytes',
    filter: (p) => [p.pid, p.comm, p.cgroup, p.exe].map(str).join('\n'),
    filterHint: 'Filter by pid, command, cgroup or executable',
    rowAttrs: (tr, p) => { if (p.pid !== undefined) tr.dataset.pid = str(p.pid); },
    columns: [
      { key: 'pid', label: 'PID', type: 'id' },
      { key: 'ns_pid', label: 'NS PID', type: 'id', get: (p) => (p.other_pid_namespace === true ? p.ns_pid : null) },
      { key: 'comm', label: 'Command', type: 'text', mono: true },
      { key: 'cgroup', label: 'Cgroup', type: 'text', mono: true },
      memoryColumn('rss_anon_bytes', 'Anon now'), memoryColumn('peak_rss_anon_bytes', 'Anon peak'),
      memoryColumn('rss_file_bytes', 'File'), memoryColumn('rss_shmem_bytes', 'Shmem'),
      memoryColumn('brk_bytes', 'Brk'), memoryColumn('mmap_anon_bytes', 'Mmap anon'),
      memoryColumn('anon_growth_bytes_per_s', 'Anon growth/s'),
      { key: 'flags', label: 'Flags', type: 'text', sortable: false, render: renderFlags },
    ],
  });
  host.appendChild(el('h3', null, 'OOM kills'));
  new PagedTable({
    host, id: 'oom-table', noun: 'OOM kills', rows: arr(R.oom_kills).map(obj), sortKey: 't_s', sortDesc: false,
    emptyText: 'No process was killed by the OOM killer.',
    columns: [
      { key: 't_s', label: 'Time', type: 'sec' },
      { key: 'pid', label: 'PID', type: 'id' },
      { key: 'ns_pid', label: 'NS PID', type: 'id' },
      { key: 'comm', label: 'Command', type: 'text', mono: true },
      { key: 'cgroup', label: 'Cgroup', type: 'text', mono: true },
      memoryColumn('rss_anon_bytes', 'Anon'), memoryColumn('rss_file_bytes', 'File'),
      memoryColumn('rss_shmem_bytes', 'Shmem'), memoryColumn('swap_bytes', 'Swap'),
    ],
  });
}

// --- size histograms ------------------------------------------------------------------
// Power-of-two classes: min 2^k (0 for the first, which holds 0 and 1), max
// 2^(k+1)-1. Reports list the non-empty ones; the gaps are drawn empty.
const sizeClass = (min) => (min <= 1 ? 0 : Math.round(Math.log2(min)));
const sizeLabel = (v) => {
  let u = 0;
  while (v >= 1024 && v % 1024 === 0 && u < UNITS.length - 1) { v /= 1024; u++; }
  return `${v} ${UNITS[u]}`;
};

function sizeBuckets(list) {
  const byClass = new Map();
  for (const raw of arr(list)) {
    const b = obj(raw);
    if (!isNum(b.min) || !isNum(b.max) || b.min < 0) continue;
    byClass.set(sizeClass(b.min), b);
  }
  if (!byClass.size) return [];
  const classes = [...byClass.keys()];
  const lo = Math.min(...classes), hi = Math.max(...classes);
  const out = [];
  for (let k = lo; k <= hi; k++) {
    const b = byClass.get(k);
    out.push(b ? { min: b.min, max: b.max, count: num(b.count), bytes: num(b.bytes) }
               : { min: k ? 2 ** k : 0, max: 2 ** (k + 1) - 1, count: 0, bytes: 0 });
  }
  return out;
}

// Bars of allocations (or bytes) by size class.
function drawHistogram(buckets, metric, o) {
  const W = o.width || 1200, H = o.height || 240, M = { l: 84, r: 12, t: 12, b: 34 };
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  let ymax = 0;
  for (const b of buckets) ymax = Math.max(ymax, b[metric]);
  const ya = metric === 'bytes' ? byteAxis(ymax > 0 ? ymax : 1) : countAxis(ymax > 0 ? ymax : 1);
  const sy = (v) => M.t + ph - v / ya.top * ph;
  const svg = svgEl('svg', { class: 'chart histogram', viewBox: `0 0 ${W} ${H}`, role: 'img',
                             'aria-label': o.title, 'data-metric': metric });
  if (o.id) svg.setAttribute('id', o.id);
  svg.appendChild(svgEl('title', null, o.title));
  const axis = svgEl('g', { class: 'axis' });
  const grid = svgEl('g', { class: 'grid' });
  for (let k = 0; k * ya.step <= ya.top * (1 + 1e-9); k++) {
    const v = k * ya.step, y = sy(v).toFixed(1);
    if (k) grid.appendChild(svgEl('line', { x1: M.l, x2: W - M.r, y1: y, y2: y }));
    axis.appendChild(svgEl('text', { x: M.l - 8, y, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, ya.label(v)));
  }
  axis.appendChild(svgEl('line', { x1: M.l, x2: W - M.r, y1: M.t + ph, y2: M.t + ph }));
  svg.appendChild(grid);
  const bw = pw / Math.max(1, buckets.length);
  const every = Math.max(1, Math.ceil(buckets.length / (pw / 56)));  // labels ~56 units apart
  const bars = svgEl('g', { class: 'bars' });
  buckets.forEach((b, i) => {
    const x = M.l + i * bw, v = b[metric], y = sy(v);
    const r = svgEl('rect', { class: 'bar', x: (x + bw * 0.1).toFixed(1), y: y.toFixed(1), width: (bw * 0.8).toFixed(1),
                              height: (M.t + ph - y).toFixed(1), 'data-min': b.min, 'data-max': b.max,
                              'data-count': b.count, 'data-bytes': b.bytes });
    r.appendChild(svgEl('title', null, `${fmtNum(b.min)}\u2013${fmtNum(b.max)} B: ${fmtNum(b.count)} allocations, ${human(b.bytes)}`));
    bars.appendChild(r);
    if (i % every === 0)
      axis.appendChild(svgEl('text', { x: (x + bw / 2).toFixed(1), y: M.t + ph + 16, 'text-anchor': 'middle' }, sizeLabel(b.min)));
  });
  svg.appendChild(axis);
  svg.appendChild(bars);
  return svg;
}

// Buttons of which one is pressed; onChange(key) when another is.
function segmented(id, options, current, onChange) {
  const g = el('div', 'segmented');
  g.id = id;
  g.setAttribute('role', 'group');
  for (const [key, label] of options) {
    const b = el('button', 'seg', label);
    b.type = 'button';
    b.dataset.key = key;
    b.setAttribute('aria-pressed', String(key === current));
    b.addEventListener('click', () => {
      for (const x of g.children) x.setAttribute('aria-pressed', String(x === b));
      onChange(key);
    });
    g.appendChild(b);
  }
  return g;
}

function renderSizes(R) {
  const host = byId('sizes-body');
  if (!Array.isArray(R.size_histogram)) {
    host.appendChild(el('p', 'note', 'This report has no size histogram.'));
    return;
  }
  const buckets = sizeBuckets(R.size_histogram);
  if (!buckets.length) {
    host.appendChild(el('p', 'note', 'No allocations, so no sizes.'));
    return;
  }
  let count = 0;
  for (const b of buckets) count += b.count;
  const controls = el('div', 'controls');
  const slot = el('div', 'chart-slot');
  const draw = (metric) => {
    slot.textContent = '';
    slot.appendChild(drawHistogram(buckets, metric, { id: 'sizes-chart', title: 'Allocations by size' }));
  };
  controls.appendChild(segmented('sizes-metric', [['count', 'Allocations'], ['bytes', 'Bytes']], 'count', draw));
  controls.appendChild(el('span', 'note', `${fmtNum(count)} allocations by size; a bar holds the sizes from its label up to the next label.`));
  host.appendChild(controls);
  host.appendChild(slot);
  draw('count');
}

// A site's own sizes, under its stack when its row is opened.
function siteSizes(s, into) {
  if (!Array.isArray(s.size_histogram)) return;
  const buckets = sizeBuckets(s.size_histogram);
  if (!buckets.length) return;
  const box = el('div', 'site-sizes');
  box.appendChild(el('h4', null, 'Sizes'));
  box.appendChild(drawHistogram(buckets, 'count', { width: 720, height: 170, title: 'This site\'s allocations by size' }));
  into.appendChild(box);
}

// --- flame graph ------------------------------------------------------------------------
const FLAME_METRICS = [
  { key: 'alloc_bytes', label: 'Bytes', long: 'Bytes allocated', fmt: human },
  { key: 'alloc_count', label: 'Allocations', long: 'Allocations', fmt: fmtNum },
  { key: 'live_bytes', label: 'Live bytes', long: 'Live at the end', fmt: human },
  { key: 'peak_bytes', label: 'Live at the peak', long: 'Live at the peak', fmt: human },
];

// One tree of the sites' stacks, outermost frame first (stacks are written
// innermost first); frames of one name under one parent are one node.
// Written for 30,000 sites: no per-site arrays, child maps only where needed.
function flameTree(sites, peakBytes) {
  const nodes = [];
  const V = [];  // node id * 4 + metric -> its figure: one array, not 30,000 small ones
  const make = (name, kind, parent) => {
    const n = { id: nodes.length, name, kind, parent, depth: parent ? parent.depth + 1 : 0, kids: null, sorted: null };
    nodes.push(n);
    V.push(0, 0, 0, 0);
    return n;
  };
  const root = make('all', 'root', null);
  const named = new Map();  // frame index -> { name, kind }
  const nameOf = (f) => {
    let n = Number.isInteger(f) ? named.get(f) : undefined;
    if (n) return n;
    const o = frameObj(f);
    n = { name: frameLabel(o), kind: typeof o.symbol === 'string' && o.symbol ? 'sym' : 'addr' };
    if (Number.isInteger(f)) named.set(f, n);
    return n;
  };
  const TRUNCATED = { name: '[stack truncated]', kind: 'none' }, NONE = { name: '[no stack]', kind: 'none' };
  let b = 0, c = 0, l = 0, p = 0;
  const step = (node, f) => {
    let k = node.kids ? node.kids.get(f.name) : undefined;
    if (!k) {
      k = make(f.name, f.kind, node);
      (node.kids || (node.kids = new Map())).set(f.name, k);
    }
    const i = k.id * 4;
    V[i] += b; V[i + 1] += c; V[i + 2] += l; V[i + 3] += p;
    return k;
  };
  for (const s of sites) {
    b = num(s.alloc_bytes); c = num(s.alloc_count); l = num(s.live_bytes);
    p = peakBytes.size ? peakBytes.get(siteKey(s)) || 0 : 0;
    V[0] += b; V[1] += c; V[2] += l; V[3] += p;
    let node = s.truncated === true ? step(root, TRUNCATED) : root;
    const st = arr(s.stack);
    for (let i = st.length - 1; i >= 0; i--) node = step(node, nameOf(st[i]));
    if (!st.length) step(node, NONE);
  }
  return { root, nodes, value: (n, m) => V[n.id * 4 + m] };
}

function flameColor(n) {
  if (n.kind === 'root' || n.kind === 'none') return '#d0d5dd';
  if (n.kind === 'addr') return '#b9c6d6';
  let h = 0;
  for (let i = 0; i < n.name.length; i++) h = (h * 31 + n.name.charCodeAt(i)) >>> 0;
  return `hsl(${8 + h % 44}, ${72 + (h >> 8) % 18}%, ${60 + (h >> 16) % 10}%)`;
}

// Frames as positioned boxes, widths proportional to the metric; a click
// zooms into a frame (its callers stay above, full width, to zoom out to).
class FlameGraph {
  constructor(host, tree, metrics, peakNote) {
    this.tree = tree;
    this.metrics = metrics;
    this.m = 0;
    this.focus = tree.root;
    this.peakNote = peakNote;
    const controls = el('div', 'controls');
    controls.appendChild(segmented('flame-metric', metrics.map((x) => [x.key, x.label]), metrics[0].key, (key) => {
      this.m = FLAME_METRICS.findIndex((x) => x.key === key);
      this.draw();
    }));
    this.reset = el('button', 'small', 'Reset zoom');
    this.reset.type = 'button';
    this.reset.id = 'flame-reset';
    this.reset.addEventListener('click', () => this.zoom(tree.root));
    controls.appendChild(this.reset);
    host.appendChild(controls);
    this.box = el('div', 'flame');
    this.box.id = 'flame';
    host.appendChild(this.box);
    this.info = el('p', 'note flame-info');
    this.info.id = 'flame-info';
    host.appendChild(this.info);
    this.culledNote = el('p', 'note');
    this.culledNote.id = 'flame-culled';
    host.appendChild(this.culledNote);
    const frameAt = (ev) => { const d = ev.target.closest('.flame-frame'); return d ? tree.nodes[Number(d.dataset.node)] : null; };
    this.box.addEventListener('click', (ev) => { const n = frameAt(ev); if (n) this.zoom(n); });
    this.box.addEventListener('mouseover', (ev) => { const n = frameAt(ev); if (n) this.info.textContent = this.describe(n, '; '); });
    this.box.addEventListener('mouseleave', () => this.hint());
    this.draw();
  }

  val(n, m) { return this.tree.value(n, m); }
  zoom(n) { this.focus = n; this.draw(); }
  hint() { this.info.textContent = 'Click a frame to zoom into it; click a frame above it, or Reset zoom, to zoom out.'; }

  // The frame's figures: the metric drawn first, with its share of all.
  describe(n, sep) {
    const M = FLAME_METRICS[this.m], v = this.val(n, this.m), all = this.val(this.tree.root, this.m);
    const parts = [n.name, `${M.long}: ${M.fmt(v)}${all > 0 ? ` (${fmtPct(v / all)} of all)` : ''}`];
    for (const x of this.metrics)
      if (x !== M) parts.push(`${x.long}: ${x.fmt(this.val(n, FLAME_METRICS.indexOf(x)))}`);
    return parts.join(sep);
  }

  sorted(n) {
    const m = this.m;
    if (!n.sorted) n.sorted = [];
    if (!n.sorted[m])
      n.sorted[m] = (n.kids ? [...n.kids.values()] : []).filter((k) => this.val(k, m) > 0)
        .sort((a, b) => (this.val(b, m) - this.val(a, m)) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return n.sorted[m];
  }

  draw() {
    const m = this.m, box = this.box;
    if (!(this.val(this.focus, m) > 0)) this.focus = this.tree.root;
    const f = this.focus, fv = this.val(f, m);
    box.textContent = '';
    this.reset.disabled = f === this.tree.root;
    box.dataset.metric = FLAME_METRICS[m].key;
    box.dataset.focus = String(f.id);
    box.setAttribute('data-focus-name', f.name);
    box.dataset.focusValue = String(fv);
    box.dataset.total = String(this.val(this.tree.root, m));
    if (!(fv > 0)) {
      box.dataset.drawn = '0';
      box.dataset.culled = '0';
      box.style.height = '';
      box.appendChild(el('p', 'note', m === 3 ? 'No site is listed as live at the peak.' : `Nothing to draw: no ${FLAME_METRICS[m].long.toLowerCase()}.`));
      this.culledNote.textContent = '';
      this.info.textContent = '';
      return;
    }
    const W = box.clientWidth || 1000;
    const frag = document.createDocumentFragment();
    for (let a = f.parent; a; a = a.parent) frag.appendChild(this.frame(a, 0, 1, 'ancestor', W));
    let drawn = 0, culled = 0, depth = f.depth;
    const todo = [[f, 0]];
    while (todo.length) {
      const [n, x] = todo.pop();
      frag.appendChild(this.frame(n, x, this.val(n, m) / fv, n === f ? 'focus' : null, W));
      drawn++;
      depth = Math.max(depth, n.depth);
      let cx = x;
      const kids = this.sorted(n);
      for (let i = 0; i < kids.length; i++) {
        const w = this.val(kids[i], m) / fv;
        if (w * W < FLAME_MIN_PX) { culled += kids.length - i; break; }  // the rest are narrower still
        todo.push([kids[i], cx]);
        cx += w;
      }
    }
    box.style.height = `${(depth + 1) * FLAME_ROW}px`;
    box.appendChild(frag);
    box.dataset.drawn = String(drawn);
    box.dataset.culled = String(culled);
    this.culledNote.textContent = (culled ? `${fmtNum(culled)} ${culled === 1 ? 'frame' : 'frames'} narrower than ` +
      `${FLAME_MIN_PX} pixels not drawn (nor what they call): zoom in to see them. ` : '') +
      (m === 3 ? this.peakNote : '');
    this.hint();
  }

  frame(n, x, w, role, W) {
    const d = el('div', 'flame-frame', w * W >= FLAME_LABEL_PX ? n.name : null);
    if (role) d.classList.add(role);
    if (n.kind !== 'sym') d.classList.add(n.kind);
    d.dataset.node = String(n.id);
    d.dataset.depth = String(n.depth);
    d.dataset.value = String(this.val(n, this.m));
    d.title = this.describe(n, '\n');
    d.style.left = `${(x * 100).toFixed(4)}%`;
    d.style.width = `${(w * 100).toFixed(4)}%`;
    d.style.top = `${n.depth * FLAME_ROW}px`;
    d.style.backgroundColor = flameColor(n);
    return d;
  }
}

function renderFlame(R) {
  const host = byId('flame-body');
  const sites = arr(R.sites).map(obj);
  if (!sites.length) {
    host.appendChild(el('p', 'note', 'No allocation sites, so no flame graph.'));
    return;
  }
  const peakBytes = new Map();  // by site (siteKey)
  for (const p of PEAK.sites || []) {
    const s = SITES.of(p);
    if (s && isNum(p.live_bytes)) peakBytes.set(siteKey(s), (peakBytes.get(siteKey(s)) || 0) + p.live_bytes);
  }
  const metrics = FLAME_METRICS.filter((x) => x.key !== 'peak_bytes' || PEAK.sites !== null);
  host.appendChild(el('p', 'note', 'The sites\' call stacks merged, callers above callees, each frame as wide as ' +
                                   'its share of the metric. Hover a frame for its figures.'));
  const shown = PEAK.sites ? PEAK.sites.length : 0;
  new FlameGraph(host, flameTree(sites, peakBytes), metrics,
                 `Live at the peak: the ${fmtNum(shown)} ${shown === 1 ? 'site' : 'sites'} the report lists at the peak.`);
}

// --- the peak's sites, temporaries ---------------------------------------------------------
// A site is named by its id within its process: the peak's sites are found
// by pid and id where they say their pid, by id alone otherwise.
const siteKey = (s) => `${str(s.pid)}:${str(s.id)}`;
function siteIndex(R) {
  const byKey = new Map(), byId = new Map();
  for (const s of arr(R.sites).map(obj)) {
    if (s.id === undefined || s.id === null) continue;
    byKey.set(siteKey(s), s);
    if (!byId.has(str(s.id))) byId.set(str(s.id), s);
  }
  const known = (v) => v !== undefined && v !== null;
  return { of: (p) => {
    if (!known(p.pid)) return byId.get(str(p.id));
    const s = byKey.get(siteKey(p)) || byId.get(str(p.id));
    return s && (!known(s.pid) || str(s.pid) === str(p.pid)) ? s : undefined;  // never another process's
  } };
}

function siteDetail(s) {
  const d = el('div', 'site-detail');
  d.appendChild(stackNode(s.stack, s.truncated === true, s.end));
  return d;
}

function renderPeak(R) {
  const host = byId('peak-body');
  if (!PEAK.present) {
    host.appendChild(el('p', 'note', 'This report does not say when the peak was or what was live then.'));
    return;
  }
  const total = PEAK.at ? PEAK.at.bytes : PEAK.bytes;
  const when = PEAK.at ? ` at ${fmtSec(PEAK.at.t)}` : '';
  host.appendChild(el('p', 'note', `What was live at ${PEAK.own ? `process ${str(PEAK.pid)}'s own peak` : 'the peak'} ` +
                                   `(${human(total)}${when}), by allocation site, largest first. Click a row for its stack.`));
  if (PEAK.note) {
    const n = el('p', 'note', PEAK.note);
    n.id = 'peak-note';
    host.appendChild(n);
  }
  const rows = (PEAK.sites || []).map((p) => {
    const s = SITES.of(p);
    return { id: p.id, pid: p.pid, site: s || null, live_bytes: p.live_bytes, live_count: p.live_count,
             share: isNum(p.live_bytes) && isNum(total) && total > 0 ? p.live_bytes / total : null };
  });
  new PagedTable({
    host, id: 'peak-table', noun: 'sites', rows, sortKey: 'live_bytes',
    emptyText: 'No site is listed as live at the peak.',
    rowAttrs: (tr, r) => { tr.dataset.id = str(r.id); },
    detail: (r) => (r.site ? siteDetail(r.site) : null),
    onOpen: (r, td) => siteSizes(r.site, td),
    columns: [
      { key: 'function', label: 'Function', type: 'text', get: (r) => (r.site ? siteLabel(r.site).text : `[site ${str(r.id)}]`),
        render: (td, r) => {
          if (r.site) renderFunction(td, r.site);
          else td.appendChild(el('span', 'fn unknown', `[site ${str(r.id)}${r.pid !== undefined && r.pid !== null
            ? ` of pid ${str(r.pid)}` : ''}, not among the sites]`));
        } },
      { key: 'live_bytes', label: 'Live bytes at the peak', type: 'bytes' },
      { key: 'live_count', label: 'Live blocks at the peak', type: 'int' },
      { key: 'share', label: 'Share of the peak', type: 'pct' },
    ],
  });
}

function renderTemporaries(R) {
  const host = byId('temporaries-body');
  const totals = obj(R.totals);
  if (!isNum(totals.temporary_count)) {
    host.appendChild(el('p', 'note', 'This report does not count temporary allocations.'));
    return;
  }
  host.appendChild(el('p', 'note', 'A temporary allocation is freed by the thread that made it before that thread ' +
    `allocates again. ${fmtNum(totals.temporary_count)} of ${fmtNum(totals.alloc_count)} allocations were temporary` +
    (isNum(totals.alloc_count) && totals.alloc_count > 0 ? ` (${fmtPct(totals.temporary_count / totals.alloc_count)}).` : '.') +
    ' Sites by their temporaries; click a row for its stack.'));
  const rows = arr(R.sites).map(obj).filter((s) => isNum(s.temporary_count) && s.temporary_count > 0);
  new PagedTable({
    host, id: 'temporaries-table', noun: 'sites', rows, sortKey: 'temporary_count',
    filter: rows.length > 10 ? stackSearchText : null, filterHint: 'Filter by function, symbol or module',
    emptyText: 'No site made temporary allocations.',
    rowAttrs: (tr, s) => { if (s.id !== undefined && s.id !== null) tr.dataset.id = str(s.id); },
    detail: siteDetail,
    onOpen: siteSizes,
    columns: [
      functionColumn,
      { key: 'temporary_count', label: 'Temporaries', type: 'int' },
      { key: 'alloc_count', label: 'Allocations', type: 'int' },
      { key: 'temporary_share', label: 'Temporary share', type: 'pct',
        get: (s) => (isNum(s.alloc_count) && s.alloc_count > 0 ? s.temporary_count / s.alloc_count : null) },
      { key: 'alloc_bytes', label: 'Bytes', type: 'bytes' },
    ],
  });
}

// Threads of one name are one row (a pool of 94 workers: "x94", its figures
// summed, its peak the largest of theirs), opened to list each.
const THREAD_SUMS = ['alloc_count', 'alloc_bytes', 'free_count', 'free_bytes', 'live_count', 'live_bytes', 'temporary_count'];

function threadGroups(threads) {
  const groups = new Map();
  for (const t of threads) {
    const name = str(t.name);
    let g = groups.get(name);
    if (!g) groups.set(name, g = { name, members: [], threads: 0, peak_live_bytes: null });
    g.members.push(t);
    g.threads++;
    for (const key of THREAD_SUMS) {
      const v = counter(t, key);
      if (isNum(v)) g[key] = (g[key] || 0) + v;
    }
    const p = counter(t, 'peak_live_bytes');
    if (isNum(p)) g.peak_live_bytes = Math.max(g.peak_live_bytes === null ? 0 : g.peak_live_bytes, p);
  }
  for (const g of groups.values()) g.tid = g.threads === 1 ? g.members[0].tid : null;
  return [...groups.values()];
}

function threadSwatches(td, tids) {
  for (const tid of tids) {
    const color = threadColors.get(str(tid));
    if (!color) continue;
    const sw = el('span', 'swatch');
    sw.style.backgroundColor = color;
    sw.style.marginRight = '6px';
    sw.title = `its line on the chart (${str(tid)})`;
    td.appendChild(sw);
  }
}

function threadMembers(g, hasTemporaries) {
  const wrap = el('div', 'members');
  const table = el('table', 'data members');
  const cols = [['tid', 'TID', 'id'], ['pid', 'PID', 'id'], ['alloc_count', 'Allocations', 'int'],
                ['alloc_bytes', 'Bytes', 'bytes'], ['live_bytes', 'Live bytes', 'bytes'],
                ['peak_live_bytes', 'Peak live bytes', 'bytes']];
  if (hasTemporaries) cols.push(['temporary_count', 'Temporaries', 'int']);
  const hr = el('tr');
  for (const [, label, type] of cols) hr.appendChild(el('th', type === 'text' ? null : 'num', label));
  const thead = el('thead');
  thead.appendChild(hr);
  table.appendChild(thead);
  const tbody = el('tbody');
  const members = g.members.slice().sort((a, b) => num(counter(b, 'alloc_bytes')) - num(counter(a, 'alloc_bytes')));
  for (const t of members) {
    const tr = el('tr', 'member');
    if (t.tid !== undefined) tr.dataset.tid = str(t.tid);
    for (const [key, , type] of cols) {
      const td = el('td');
      fillCell(td, { key, type }, t, key === 'tid' || key === 'pid' ? t[key] : counter(t, key));
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
  table.appendChild(tbody);
  wrap.appendChild(table);
  return wrap;
}

function renderThreads(R) {
  const host = byId('threads-body');
  const threads = arr(R.threads).map(obj);
  const rows = threadGroups(threads);
  const hasTemporaries = threads.some((t) => isNum(counter(t, 'temporary_count')));
  if (rows.length < threads.length)
    host.appendChild(el('p', 'note', `${fmtNum(threads.length)} threads under ${fmtNum(rows.length)} names: threads of one name ` +
                                     'are one row, their figures summed and their peak the largest of theirs. Click a row to list them.'));
  const columns = [
    { key: 'name', label: 'Name', type: 'text', render: (td, g) => {
      threadSwatches(td, g.members.map((t) => t.tid).slice(0, 3));
      td.appendChild(el('span', 'tname', g.name || DASH));
      if (g.threads > 1) td.appendChild(el('span', 'badge count', `x${g.threads}`));
    } },
    { key: 'threads', label: 'Threads', type: 'int' },
    { key: 'tid', label: 'TID', type: 'id' },
    { key: 'alloc_count', label: 'Allocations', type: 'int' },
    { key: 'alloc_bytes', label: 'Bytes', type: 'bytes' },
    { key: 'live_bytes', label: 'Live bytes', type: 'bytes' },
    { key: 'peak_live_bytes', label: 'Peak live bytes', type: 'bytes' },
  ];
  if (hasTemporaries) columns.push({ key: 'temporary_count', label: 'Temporaries', type: 'int' });
  new PagedTable({
    host, id: 'threads-table', noun: 'threads', rows, sortKey: 'alloc_bytes',
    filter: threads.length > 10 ? (g) => [g.name, ...g.members.map((t) => str(t.tid))].join('\n') : null,
    filterHint: 'Filter by name or tid',
    rowAttrs: (tr, g) => {
      if (g.tid !== null && g.tid !== undefined) tr.dataset.tid = str(g.tid);
      tr.dataset.threads = String(g.threads);
      tr.setAttribute('data-name', g.name);
    },
    detail: (g) => (g.threads > 1 ? threadMembers(g, hasTemporaries) : null),
    columns,
  });
}

// --- main --------------------------------------------------------------------------------
function showError(where, e) {
  const msg = `${where}: ${e && e.message ? e.message : str(e)}`;
  errors.push(msg);
  const box = byId('errors');
  if (!box.firstChild) box.appendChild(el('strong', null, 'Part of this report could not be drawn:'));
  box.appendChild(el('div', null, msg));
  box.hidden = false;
}

window.addEventListener('error', (ev) => showError('script', ev.error || ev.message));

const started = performance.now();
const data = byId('report');
const variablesCount = Number(data.dataset.variablesCount) || 0;
let R = {};
try { R = obj(JSON.parse(data.textContent)); } catch (e) { showError('report data', e); }
const PEAK = reportPeak(R);
const SITES = siteIndex(R);
const sections = [['summary', () => renderSummary(R, variablesCount)], ['processes', () => renderProcesses(R)],
                  ['timeline', () => renderTimeline(R)], ['peak', () => renderPeak(R)],
                  ['flame graph', () => renderFlame(R)], ['sizes', () => renderSizes(R)],
                  ['modes', () => renderModes(R)], ['sites', () => renderSites(R)],
                  ['temporaries', () => renderTemporaries(R)], ['leaks', () => renderLeaks(R)],
                  ['variables', () => renderVariables(R, variablesCount)], ['threads', () => renderThreads(R)]];
const spent = {};  // ms a section, for whoever wonders where the time went
for (const [name, draw] of sections) {
  const t0 = performance.now();
  try { draw(); } catch (e) { showError(name, e); }
  spent[name] = Math.round(performance.now() - t0);
}
const t0 = performance.now();
void document.body.getBoundingClientRect();  // the layout too is part of the time to render
spent.layout = Math.round(performance.now() - t0);
document.body.dataset.renderSections = JSON.stringify(spent);
document.body.dataset.renderMs = String(Math.round(performance.now() - started));
document.body.dataset.rendered = errors.length ? 'error' : 'ok';
})();
