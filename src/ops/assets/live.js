// The live page: reads /admin/state once a second and redraws. The JSON is the
// contract (see the README); this script only formats it.
'use strict';

const PERIOD_MS = 1000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

function seconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 0.001) return `${Math.round(s * 1e6)} µs`;
  if (s < 1) return `${(s * 1e3).toPrecision(3)} ms`;
  return `${s.toPrecision(3)} s`;
}

function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function percent(x) {
  return x === null || x === undefined ? '–' : `${(x * 100).toFixed(1)} %`;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// A proportion as a bar; `hot` turns it red.
function bar(fraction, label, hot) {
  const wrap = el('span');
  const b = el('span', undefined, hot ? 'bar hot' : 'bar');
  const fill = el('i');
  fill.style.width = `${Math.max(0, Math.min(1, fraction || 0)) * 100}%`;
  b.append(fill);
  wrap.append(b, document.createTextNode(label));
  return wrap;
}

// Replaces a table's rows; a cell is text, a node, or [text-or-node, class].
function fill(table, rows) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...rows.map((cells) => {
    const tr = el('tr');
    for (const cell of cells.cells || cells) {
      const [content, cls] = Array.isArray(cell) ? cell : [cell, undefined];
      const td = el('td', undefined, cls);
      if (content instanceof Node) td.append(content); else td.textContent = String(content);
      tr.append(td);
    }
    for (const [k, v] of Object.entries(cells.data || {})) tr.dataset[k] = v;
    return tr;
  }));
}

function reasons(map) {
  const parts = Object.entries(map || {}).map(([reason, n]) => `${reason} ${n}`);
  return parts.length ? parts.join(', ') : '–';
}

function nodes(state) {
  fill('nodes', state.nodes.map((n) => {
    const g = n.guard;
    const memory = g.memory_limit_bytes
      ? bar(g.node_memory_bytes / g.memory_limit_bytes,
        `${bytes(g.node_memory_bytes)} / ${bytes(g.memory_limit_bytes)}`, g.state === 'shedding')
      : (g.node_memory_bytes ? bytes(g.node_memory_bytes) : '');
    const guard = el('span');
    guard.append(el('span', `${g.state} `, g.state === 'shedding' ? 'bad' : undefined), memory);
    const up = el('span', n.up ? 'up' : 'down', n.up ? 'ok' : 'bad');
    if (n.problems.length) up.title = n.problems.join('; ');
    const age = n.head_age_seconds === null ? '' : ` (${n.head_age_seconds.toFixed(1)} s ago)`;
    return {
      cells: [
        n.url, up, [`${n.head_height ?? '–'}${age}`], [n.lag_blocks ?? '–', 'num'],
        [n.in_flight, 'num'], `${seconds(n.latency_p50_seconds)} / ${seconds(n.latency_p99_seconds)}`,
        [n.breaker, n.breaker === 'closed' ? 'ok' : 'bad'], guard,
      ],
      data: { node: n.url },
    };
  }));
}

function lanes(state) {
  fill('lanes', state.lanes.map((l) => ({
    cells: [
      l.paused ? [`${l.name} (paused by the guard)`, 'warn'] : l.name,
      `${l.limit}${l.adaptive ? ` (adaptive, max ${l.max_concurrency})` : ''}`,
      [l.in_flight, 'num'],
      [`${l.queued} / ${l.max_queue}`, 'num'],
      `${seconds(l.wait_p50_seconds)} / ${seconds(l.wait_p99_seconds)}`,
      seconds(l.latency_seconds),
      [reasons(l.refusals), Object.keys(l.refusals).length ? 'warn' : undefined],
    ],
    data: { lane: l.name },
  })));
  const other = reasons(state.refusals_outside_lanes);
  $('other-refusals').textContent = other === '–' ? '' : `Requests refused before any call was read: ${other}`;
}

function clients(state) {
  const c = state.clients;
  fill('clients', c.top.map((row, i) => ({
    cells: [
      [i + 1, 'num'], row.client, [seconds(row.node_seconds), 'num'],
      bar(row.share, percent(row.share), row.share > 0.5),
      [row.node_calls, 'num'], [row.refusals, row.refusals ? 'num warn' : 'num'],
    ],
    data: { client: row.client },
  })));
  $('clients-note').textContent = `Node time of all clients: ${seconds(c.node_seconds)} in `
    + `${c.node_calls} calls; ${c.tracked} of at most ${c.capacity} clients tracked.`;
}

function cache(state) {
  const c = state.cache;
  const facts = [
    ['hit ratio', percent(c.hit_ratio)],
    ['hits / misses', `${c.hits} / ${c.misses}`],
    ['coalesced', c.coalesced],
    ['stale answers', c.stale],
    ['bytes / cap', bar(c.bytes / c.max_bytes, `${bytes(c.bytes)} / ${bytes(c.max_bytes)}`)],
    ['entries', c.entries],
    ['chain generation', c.chain_generation],
  ];
  $('cache').replaceChildren(...facts.map(([name, value]) => {
    const d = el('div');
    const dd = el('dd');
    if (value instanceof Node) dd.append(value); else dd.textContent = String(value);
    d.append(el('dt', name), dd);
    return d;
  }));
}

// One sparkline: the points as polylines, broken where a value is missing.
function spark(id, values, format) {
  const svg = $(id);
  const known = values.filter((v) => v !== null && v !== undefined);
  const top = Math.max(...known, 0) || 1;
  const step = values.length > 1 ? 300 / (values.length - 1) : 0;
  const runs = [[]];
  values.forEach((v, i) => {
    if (v === null || v === undefined) { runs.push([]); return; }
    runs[runs.length - 1].push(`${(i * step).toFixed(1)},${(38 - (v / top) * 36).toFixed(1)}`);
  });
  svg.replaceChildren(...runs.filter((r) => r.length).map((r) => {
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('points', r.length === 1 ? `${r[0]} ${r[0]}` : r.join(' '));
    return line;
  }));
  $(`${id}-now`).textContent = known.length ? format(values[values.length - 1]) : '';
}

function history(state) {
  const p = state.history.points;
  spark('spark-requests', p.map((x) => x.requests_per_second), (v) => (v ?? 0).toFixed(1));
  spark('spark-node', p.map((x) => x.node_calls_per_second), (v) => (v ?? 0).toFixed(1));
  spark('spark-hits', p.map((x) => x.hit_ratio), percent);
  spark('spark-p99', p.map((x) => x.p99_seconds), seconds);
}

let reads = 0;

async function refresh() {
  const status = $('status');
  try {
    const response = await fetch('/admin/state', { cache: 'no-store', credentials: 'same-origin' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const state = await response.json();
    nodes(state);
    lanes(state);
    clients(state);
    cache(state);
    history(state);
    reads += 1;
    document.body.dataset.reads = String(reads);
    status.className = 'dim';
    status.textContent = `updated ${new Date().toLocaleTimeString()}, every second; `
      + `windows cover the last ${Math.round(state.window_seconds)} s`;
  } catch (e) {
    status.className = 'bad';
    status.textContent = `cannot read /admin/state: ${e.message}`;
  } finally {
    setTimeout(refresh, PERIOD_MS);
  }
}

refresh();
