// The management UI: one page of plain JS over the node's HTTP API (the same routes
// rabbitmqadmin uses), logged in with HTTP basic auth as RabbitMQ's UI does. Every page
// redraws from the API every 5 s (RabbitMQ's default refresh).
'use strict';

const REFRESH_MS = 5000;
// One minute of 5 s samples, as RabbitMQ's UI shows by default.
const WINDOW = 'msg_rates_age=60&msg_rates_incr=5&lengths_age=60&lengths_incr=5&data_rates_age=60&data_rates_incr=5';
let auth = sessionStorage.getItem('mqnode-auth');
let timer = null;
let renderGen = 0;  // a newer render makes the older ones' answers stale
const STALE = {stale: true};

const $ = (sel) => document.querySelector(sel);

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}
const enc = encodeURIComponent;

// A request to the API; throws {status, reason} on an error answer.
async function api(method, path, body) {
  // X-Requested-With: a refused login answers without a challenge, so the browser shows
  // no dialog of its own over the login form.
  const headers = {Authorization: 'Basic ' + auth, 'X-Requested-With': 'XMLHttpRequest'};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch('/api/' + path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  if (r.status === 401 && method === 'GET' && path === 'whoami') throw {status: 401, reason: 'Login failed'};
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw {status: r.status, reason: data && (data.reason || data.error) || r.statusText};
  return data;
}

// The page's API answers, or STALE when another render started meanwhile (the user moved on).
async function load(...requests) {
  const gen = renderGen;
  const answers = await Promise.all(requests);
  if (gen !== renderGen) throw STALE;
  return answers;
}

function say(text, bad) {
  const s = $('#status');
  s.textContent = text;
  s.style.background = bad ? '#c62828' : '#333';
  if (!bad) setTimeout(() => { if (s.textContent === text) s.textContent = ''; }, 3000);
}

// Runs an action from a form or button and redraws the page after it.
async function act(what, fn) {
  try {
    await fn();
    say(what + ': done');
  } catch (e) {
    say(what + ': ' + (e.reason || e.message || e), true);
  }
  render();
}

function fmtNum(n) { return n === undefined || n === null ? '' : Number(n).toLocaleString('en-US'); }
function fmtRate(d) { return d ? (Math.round(d.rate * 10) / 10).toFixed(1) + '/s' : ''; }
function fmtBytes(n) {
  if (n === undefined) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

function table(cols, rows, empty) {
  if (!rows.length) return `<p>${esc(empty || 'Nothing here.')}</p>`;
  const head = cols.map((c) => `<th class="${c.num ? 'num' : ''}">${esc(c.title)}</th>`).join('');
  const body = rows.map((r) => '<tr>' + cols.map((c) => `<td class="${c.num ? 'num' : ''}">${c.html ? c.html(r) : esc(c.get(r))}</td>`).join('') + '</tr>').join('');
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

// A line chart on <canvas> of series [{label, color, points: [[ts, value]...]}].
function drawChart(canvas, series, unit) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, left = 50, bottom = 18;
  ctx.clearRect(0, 0, w, h);
  const all = series.flatMap((s) => s.points);
  const max = Math.max(1, ...all.map((p) => p[1]));
  const t0 = Math.min(...all.map((p) => p[0]), Date.now() - 60000), t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  ctx.strokeStyle = '#ccc';
  ctx.fillStyle = '#555';
  ctx.font = '11px sans-serif';
  for (let i = 0; i <= 4; i++) {
    const y = 4 + (h - bottom - 8) * i / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - 4, y); ctx.stroke();
    ctx.fillText((Math.round(max * (4 - i) / 4 * 10) / 10) + unit, 2, y + 4);
  }
  ctx.fillText(new Date(t0).toLocaleTimeString(), left, h - 4);
  ctx.fillText(new Date(t1).toLocaleTimeString(), w - 60, h - 4);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([t, v], i) => {
      const x = left + (w - left - 4) * (t - t0) / (t1 - t0);
      const y = 4 + (h - bottom - 8) * (1 - v / max);
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}

// Rates between consecutive samples of a *_details object (samples are newest first).
function ratePoints(details) {
  const s = (details && details.samples || []).slice().reverse();
  const out = [];
  for (let i = 1; i < s.length; i++) {
    const dt = (s[i].timestamp - s[i - 1].timestamp) / 1000;
    if (dt > 0) out.push([s[i].timestamp, Math.max(0, (s[i].sample - s[i - 1].sample) / dt)]);
  }
  return out;
}
function valuePoints(details) {
  return (details && details.samples || []).slice().reverse().map((s) => [s.timestamp, s.sample]);
}

function chartBox(id, title, series) {
  const legend = series.map((s) => `<span><i style="background:${s.color}"></i>${esc(s.label)}</span>`).join('');
  return `<div class="chart"><b>${esc(title)}</b><div class="legend">${legend}</div><canvas id="${id}" width="560" height="180"></canvas></div>`;
}

function charts(boxes) {
  return `<div class="charts">${boxes.map((b) => chartBox(b.id, b.title, b.series)).join('')}</div>`;
}
function drawCharts(boxes) {
  for (const b of boxes) drawChart(document.getElementById(b.id), b.series, b.unit);
}

function rateBoxes(prefix, stats, lengths) {
  const boxes = [];
  if (lengths) {
    boxes.push({id: prefix + '-lengths', title: 'Queued messages', unit: '', series: [
      {label: 'Ready', color: '#e6a700', points: valuePoints(lengths.messages_ready_details)},
      {label: 'Unacked', color: '#2767b5', points: valuePoints(lengths.messages_unacknowledged_details)},
      {label: 'Total', color: '#888', points: valuePoints(lengths.messages_details)}]});
  }
  stats = stats || {};
  boxes.push({id: prefix + '-rates', title: 'Message rates', unit: '/s', series: [
    {label: 'Publish', color: '#e6a700', points: ratePoints(stats.publish_details)},
    {label: 'Deliver / get', color: '#2767b5', points: ratePoints(stats.deliver_get_details)},
    {label: 'Ack', color: '#1a7f37', points: ratePoints(stats.ack_details)},
    {label: 'Redelivered', color: '#c62828', points: ratePoints(stats.redeliver_details)}]});
  return boxes;
}

// ---- pages ----------------------------------------------------------------------------

const pages = {};

pages.overview = async () => {
  const [o, nodes] = await load(api('GET', 'overview?' + WINDOW), api('GET', 'nodes'));
  const t = o.object_totals || {}, q = o.queue_totals || {}, m = o.message_stats || {};
  const tiles = [['Connections', t.connections], ['Channels', t.channels], ['Exchanges', t.exchanges],
    ['Queues', t.queues], ['Consumers', t.consumers], ['Messages', q.messages], ['Ready', q.messages_ready],
    ['Unacked', q.messages_unacknowledged]].map(([k, v]) => `<div class="tile">${k}<b>${fmtNum(v)}</b></div>`).join('');
  const rates = [['Publish', m.publish_details], ['Confirm', m.confirm_details], ['Deliver / get', m.deliver_get_details],
    ['Ack', m.ack_details], ['Redelivered', m.redeliver_details], ['Returned', m.return_unroutable_details]]
    .map(([k, v]) => `<div class="tile">${k}<b>${fmtRate(v)}</b></div>`).join('');
  const boxes = rateBoxes('overview', m, q);
  const nodeRows = table([
    {title: 'Name', get: (n) => n.name}, {title: 'Type', get: (n) => n.type},
    {title: 'Running', html: (n) => n.running ? '<span class="ok">yes</span>' : '<span class="bad">no</span>'},
    {title: 'Memory', num: true, get: (n) => fmtBytes(n.mem_used)},
    {title: 'Disk free', num: true, get: (n) => fmtBytes(n.disk_free)},
    {title: 'Alarms', html: (n) => (n.mem_alarm || n.disk_free_alarm)
      ? `<span class="bad">${[n.mem_alarm && 'memory', n.disk_free_alarm && 'disk'].filter(Boolean).join(', ')}</span>`
      : '<span class="ok">none</span>'}], nodes);
  $('#page').innerHTML = `<h1>Overview</h1><p>${esc(o.product_name)} ${esc(o.product_version)} on node ${esc(o.node)}</p>
    <h2>Totals</h2><div class="tiles">${tiles}</div>
    <h2>Message rates</h2><div class="tiles">${rates}</div>
    ${charts(boxes)}
    <h2>Nodes</h2>${nodeRows}`;
  drawCharts(boxes);
};

pages.connections = async () => {
  const [conns] = await load(api('GET', 'connections?' + WINDOW));
  $('#page').innerHTML = '<h1>Connections</h1>' + table([
    {title: 'Name', get: (c) => c.name}, {title: 'User', get: (c) => c.user}, {title: 'Vhost', get: (c) => c.vhost},
    {title: 'Client', get: (c) => c.user_provided_name}, {title: 'Channels', num: true, get: (c) => c.channels},
    {title: 'From client', num: true, get: (c) => fmtRate(c.recv_oct_details) && fmtBytes(Math.round(c.recv_oct_details.rate)) + '/s'},
    {title: 'To client', num: true, get: (c) => fmtRate(c.send_oct_details) && fmtBytes(Math.round(c.send_oct_details.rate)) + '/s'},
    {title: '', html: (c) => `<button data-close="${esc(c.name)}">Close</button>`}], conns, 'No connections.');
  for (const b of document.querySelectorAll('[data-close]'))
    b.onclick = () => act('Close connection', () => api('DELETE', 'connections/' + enc(b.dataset.close)));
};

pages.channels = async () => {
  const [chans] = await load(api('GET', 'channels?' + WINDOW));
  const rate = (k) => (c) => fmtRate((c.message_stats || {})[k + '_details']);
  $('#page').innerHTML = '<h1>Channels</h1>' + table([
    {title: 'Channel', get: (c) => c.name}, {title: 'User', get: (c) => c.user}, {title: 'Vhost', get: (c) => c.vhost},
    {title: 'State', get: (c) => c.state}, {title: 'Consumers', num: true, get: (c) => c.consumer_count},
    {title: 'Unacked', num: true, get: (c) => c.messages_unacknowledged},
    {title: 'Publish', num: true, get: rate('publish')}, {title: 'Confirm', num: true, get: rate('confirm')},
    {title: 'Deliver / get', num: true, get: rate('deliver_get')}, {title: 'Ack', num: true, get: rate('ack')}],
  chans, 'No channels.');
};

async function vhostOptions() {
  const vhosts = await api('GET', 'vhosts');
  return vhosts.map((v) => `<option>${esc(v.name)}</option>`).join('');
}

pages.exchanges = async () => {
  const [exs, vopts] = await load(api('GET', 'exchanges?' + WINDOW), vhostOptions());
  const rate = (k) => (e) => fmtRate((e.message_stats || {})[k + '_details']);
  $('#page').innerHTML = '<h1>Exchanges</h1>' + table([
    {title: 'Vhost', get: (e) => e.vhost}, {title: 'Name', get: (e) => e.name || '(AMQP default)'},
    {title: 'Type', get: (e) => e.type}, {title: 'Features', get: (e) => [e.durable && 'D', e.auto_delete && 'AD', e.internal && 'I'].filter(Boolean).join(' ')},
    {title: 'Rate in', num: true, get: rate('publish_in')}, {title: 'Rate out', num: true, get: rate('publish_out')},
    {title: '', html: (e) => e.name && !e.name.startsWith('amq.') ? `<button data-del="${esc(e.vhost)}|${esc(e.name)}">Delete</button>` : ''}], exs) +
    `<h2>Add a new exchange</h2><form id="add-exchange" class="inline box">
      <label>Vhost <select name="vhost">${vopts}</select></label>
      <label>Name <input name="name" required></label>
      <label>Type <select name="type"><option>direct</option><option>fanout</option><option>topic</option><option>headers</option></select></label>
      <label>Durable <select name="durable"><option value="true">yes</option><option value="false">no</option></select></label>
      <button type="submit">Add exchange</button></form>`;
  $('#add-exchange').onsubmit = (ev) => {
    ev.preventDefault();
    const f = formValues(ev.target);
    act('Add exchange', () => api('PUT', `exchanges/${enc(f.vhost)}/${enc(f.name)}`, {type: f.type, durable: f.durable === 'true'}));
  };
  for (const b of document.querySelectorAll('[data-del]')) {
    const [vh, name] = b.dataset.del.split('|');
    b.onclick = () => act('Delete exchange', () => api('DELETE', `exchanges/${enc(vh)}/${enc(name)}`));
  }
};

pages.queues = async (args) => {
  if (args.length === 2) return queuePage(args[0], args[1]);
  const [qs, vopts] = await load(api('GET', 'queues?' + WINDOW), vhostOptions());
  const rate = (k) => (q) => fmtRate((q.message_stats || {})[k + '_details']);
  $('#page').innerHTML = '<h1>Queues</h1>' + table([
    {title: 'Vhost', get: (q) => q.vhost},
    {title: 'Name', html: (q) => `<a href="#/queues/${enc(q.vhost)}/${enc(q.name)}">${esc(q.name)}</a>`},
    {title: 'Type', get: (q) => q.type}, {title: 'Features', get: (q) => [q.durable && 'D', q.auto_delete && 'AD', q.exclusive && 'Excl'].filter(Boolean).join(' ')},
    {title: 'State', get: (q) => q.state}, {title: 'Ready', num: true, get: (q) => fmtNum(q.messages_ready)},
    {title: 'Unacked', num: true, get: (q) => fmtNum(q.messages_unacknowledged)}, {title: 'Total', num: true, get: (q) => fmtNum(q.messages)},
    {title: 'Incoming', num: true, get: rate('publish')}, {title: 'Deliver / get', num: true, get: rate('deliver_get')},
    {title: 'Ack', num: true, get: rate('ack')}], qs, 'No queues.') +
    `<h2>Add a new queue</h2><form id="add-queue" class="inline box">
      <label>Vhost <select name="vhost">${vopts}</select></label>
      <label>Name <input name="name" required></label>
      <label>Durability <select name="durable"><option value="true">Durable</option><option value="false">Transient</option></select></label>
      <label>Auto delete <select name="auto_delete"><option value="false">No</option><option value="true">Yes</option></select></label>
      <label>Arguments (JSON) <input name="arguments" value="{}"></label>
      <button type="submit">Add queue</button></form>`;
  $('#add-queue').onsubmit = (ev) => {
    ev.preventDefault();
    const f = formValues(ev.target);
    act('Add queue', () => api('PUT', `queues/${enc(f.vhost)}/${enc(f.name)}`,
      {durable: f.durable === 'true', auto_delete: f.auto_delete === 'true', arguments: JSON.parse(f.arguments || '{}')}));
  };
};

async function queuePage(vhost, name) {
  const path = `queues/${enc(vhost)}/${enc(name)}`;
  const [q, bindings] = await load(api('GET', path + '?' + WINDOW), api('GET', path + '/bindings'));
  const boxes = rateBoxes('queue', q.message_stats, q);
  const keep = $('#get-result') ? $('#get-result').innerHTML : '';
  $('#page').innerHTML = `<h1>Queue ${esc(name)} <small>in vhost ${esc(vhost)}</small></h1>
    <div class="tiles">${[['Ready', q.messages_ready], ['Unacked', q.messages_unacknowledged], ['Total', q.messages],
      ['Consumers', q.consumers], ['Bytes', fmtBytes(q.message_bytes)]].map(([k, v]) => `<div class="tile">${k}<b>${typeof v === 'number' ? fmtNum(v) : esc(v)}</b></div>`).join('')}</div>
    <p>Type ${esc(q.type)}, ${q.durable ? 'durable' : 'transient'}${q.auto_delete ? ', auto-delete' : ''}${q.exclusive ? ', exclusive' : ''}; policy ${esc(q.policy || 'none')}; arguments <code>${esc(JSON.stringify(q.arguments))}</code></p>
    ${charts(boxes)}
    <h2>Bindings</h2>${table([{title: 'From', get: (b) => b.source || '(default exchange binding)'}, {title: 'Routing key', get: (b) => b.routing_key},
      {title: 'Arguments', get: (b) => JSON.stringify(b.arguments)},
      {title: '', html: (b) => b.source ? `<button data-unbind="${esc(b.source)}|${esc(b.properties_key)}">Unbind</button>` : ''}], bindings)}
    <form id="bind" class="inline box"><label>From exchange <input name="source" required></label>
      <label>Routing key <input name="routing_key"></label><button type="submit">Bind</button></form>
    <h2>Publish message</h2>
    <form id="publish" class="box"><label>Payload<textarea name="payload" rows="3"></textarea></label>
      <label>Delivery mode <select name="delivery_mode"><option value="1">1 - Non-persistent</option><option value="2">2 - Persistent</option></select></label>
      <button type="submit">Publish message</button></form>
    <h2>Get messages</h2>
    <form id="get" class="inline box"><label>Ack mode <select name="ackmode">
      <option value="ack_requeue_true">Nack message requeue true</option><option value="ack_requeue_false">Ack message requeue false</option>
      <option value="reject_requeue_true">Reject requeue true</option><option value="reject_requeue_false">Reject requeue false</option></select></label>
      <label>Messages <input name="count" value="1" size="4"></label><button type="submit">Get Message(s)</button></form>
    <div id="get-result">${keep}</div>
    <h2>Purge / delete</h2>
    <div class="box"><button id="purge">Purge Messages</button> <button id="delete">Delete Queue</button></div>`;
  drawCharts(boxes);
  $('#bind').onsubmit = (ev) => {
    ev.preventDefault();
    const f = formValues(ev.target);
    act('Bind', () => api('POST', `bindings/${enc(vhost)}/e/${enc(f.source)}/q/${enc(name)}`, {routing_key: f.routing_key, arguments: {}}));
  };
  for (const b of document.querySelectorAll('[data-unbind]')) {
    const [src, props] = b.dataset.unbind.split('|');
    b.onclick = () => act('Unbind', () => api('DELETE', `bindings/${enc(vhost)}/e/${enc(src)}/q/${enc(name)}/${enc(props)}`));
  }
  $('#publish').onsubmit = (ev) => {
    ev.preventDefault();
    const f = formValues(ev.target);
    act('Publish', async () => {
      const r = await api('POST', `exchanges/${enc(vhost)}/amq.default/publish`, {routing_key: name, payload: f.payload,
        payload_encoding: 'string', properties: {delivery_mode: Number(f.delivery_mode)}});
      if (!r.routed) throw {reason: 'Message published, but not routed.'};
    });
  };
  $('#get').onsubmit = (ev) => {
    ev.preventDefault();
    const f = formValues(ev.target);
    act('Get messages', async () => {
      const msgs = await api('POST', path + '/get', {count: Number(f.count), ackmode: f.ackmode, encoding: 'auto', truncate: 50000});
      $('#get-result').innerHTML = msgs.length ? msgs.map((m, i) => `<div class="box message"><b>Message ${i + 1}</b>
        <p>Exchange ${esc(m.exchange || '(AMQP default)')}, routing key ${esc(m.routing_key)}, redelivered ${m.redelivered}, ${m.message_count} left</p>
        <pre class="payload">${esc(m.payload)}</pre></div>`).join('') : '<p>Queue is empty</p>';
    });
  };
  $('#purge').onclick = () => act('Purge', () => api('DELETE', path + '/contents'));
  $('#delete').onclick = () => {
    if (!confirm(`Delete queue ${name}?`)) return;
    act('Delete queue', async () => { await api('DELETE', path); location.hash = '#/queues'; });
  };
}

pages.admin = async () => {
  const [users, vhosts, perms, policies] = await load(
    api('GET', 'users'), api('GET', 'vhosts'), api('GET', 'permissions'), api('GET', 'policies'));
  const vopts = vhosts.map((v) => `<option>${esc(v.name)}</option>`).join('');
  const del = (kind, id) => `<button data-del-${kind}="${esc(id)}">Delete</button>`;
  $('#page').innerHTML = `<h1>Admin</h1>
    <h2>Users</h2>${table([{title: 'Name', get: (u) => u.name}, {title: 'Tags', get: (u) => u.tags.join(', ')},
      {title: '', html: (u) => del('user', u.name)}], users)}
    <form id="add-user" class="inline box"><label>Username <input name="name" required></label>
      <label>Password <input name="password" type="password"></label>
      <label>Tags <input name="tags" placeholder="administrator, monitoring"></label><button type="submit">Add user</button></form>
    <h2>Virtual hosts</h2>${table([{title: 'Name', get: (v) => v.name}, {title: 'Messages', num: true, get: (v) => fmtNum(v.messages)},
      {title: '', html: (v) => del('vhost', v.name)}], vhosts)}
    <form id="add-vhost" class="inline box"><label>Name <input name="name" required></label><button type="submit">Add virtual host</button></form>
    <h2>Permissions</h2>${table([{title: 'User', get: (p) => p.user}, {title: 'Vhost', get: (p) => p.vhost},
      {title: 'Configure', get: (p) => p.configure}, {title: 'Write', get: (p) => p.write}, {title: 'Read', get: (p) => p.read},
      {title: '', html: (p) => del('perm', p.vhost + '|' + p.user)}], perms)}
    <form id="set-perm" class="inline box"><label>User <select name="user">${users.map((u) => `<option>${esc(u.name)}</option>`).join('')}</select></label>
      <label>Vhost <select name="vhost">${vopts}</select></label><label>Configure <input name="configure" value=".*"></label>
      <label>Write <input name="write" value=".*"></label><label>Read <input name="read" value=".*"></label><button type="submit">Set permission</button></form>
    <h2>Policies</h2>${table([{title: 'Vhost', get: (p) => p.vhost}, {title: 'Name', get: (p) => p.name}, {title: 'Pattern', get: (p) => p.pattern},
      {title: 'Apply to', get: (p) => p['apply-to']}, {title: 'Definition', get: (p) => JSON.stringify(p.definition)},
      {title: 'Priority', num: true, get: (p) => p.priority}, {title: '', html: (p) => del('policy', p.vhost + '|' + p.name)}], policies, 'No policies.')}
    <form id="add-policy" class="inline box"><label>Vhost <select name="vhost">${vopts}</select></label><label>Name <input name="name" required></label>
      <label>Pattern <input name="pattern" required></label><label>Apply to <select name="apply-to"><option>all</option><option>queues</option><option>exchanges</option></select></label>
      <label>Definition (JSON) <input name="definition" value='{"max-length": 1000}'></label><label>Priority <input name="priority" value="0" size="3"></label>
      <button type="submit">Add / update policy</button></form>
    <h2>Definitions</h2><div class="box"><button id="export">Download broker definitions</button>
      <p>Import: <input type="file" id="import-file" accept=".json,application/json"> <button id="import">Upload broker definitions</button></p></div>`;
  const submit = (id, what, fn) => {
    $(id).onsubmit = (ev) => { ev.preventDefault(); const f = formValues(ev.target); act(what, () => fn(f)); };
  };
  submit('#add-user', 'Add user', (f) => api('PUT', 'users/' + enc(f.name), {password: f.password, tags: f.tags}));
  submit('#add-vhost', 'Add virtual host', (f) => api('PUT', 'vhosts/' + enc(f.name), {}));
  submit('#set-perm', 'Set permission', (f) => api('PUT', `permissions/${enc(f.vhost)}/${enc(f.user)}`,
    {configure: f.configure, write: f.write, read: f.read}));
  submit('#add-policy', 'Add policy', (f) => api('PUT', `policies/${enc(f.vhost)}/${enc(f.name)}`,
    {pattern: f.pattern, 'apply-to': f['apply-to'], definition: JSON.parse(f.definition), priority: Number(f.priority)}));
  const bind = (kind, fn) => {
    for (const b of document.querySelectorAll(`[data-del-${kind}]`)) b.onclick = () => act('Delete', () => fn(b.getAttribute(`data-del-${kind}`).split('|')));
  };
  bind('user', ([n]) => api('DELETE', 'users/' + enc(n)));
  bind('vhost', ([n]) => api('DELETE', 'vhosts/' + enc(n)));
  bind('perm', ([vh, u]) => api('DELETE', `permissions/${enc(vh)}/${enc(u)}`));
  bind('policy', ([vh, n]) => api('DELETE', `policies/${enc(vh)}/${enc(n)}`));
  $('#export').onclick = () => act('Export definitions', async () => {
    const defs = await api('GET', 'definitions');
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([JSON.stringify(defs, null, 2)], {type: 'application/json'}));
    a.download = 'mqnode-definitions.json';
    a.click();
  });
  $('#import').onclick = () => act('Import definitions', async () => {
    const file = $('#import-file').files[0];
    if (!file) throw {reason: 'choose a definitions file first'};
    await api('POST', 'definitions', JSON.parse(await file.text()));
  });
};

// The whole appliance as this node sees it: its modules' health, the lb's backends with
// their servers' health-check state, and each VRRP instance's state and master (the VIP
// holder), from /api/mqnode/status.
pages.appliance = async () => {
  const [st, nodes] = await load(api('GET', 'mqnode/status'), api('GET', 'nodes'));
  const mods = st.modules || {};
  const cls = (s) => /^(ok|UP|MASTER|master)/.test(s) ? 'ok' : /^(degraded|DRAIN|NOLB|BACKUP|backup)/i.test(s) ? 'warn' : 'bad';
  const state = (s) => `<span class="${cls(String(s))}">${esc(s)}</span>`;
  let html = `<h1>Appliance</h1><p>Node ${esc(st.node)}, version ${esc(st.version)}</p><h2>Modules</h2>` + table([
    {title: 'Module', get: (m) => m[0]}, {title: 'Health', html: (m) => state(m[1].health.state)},
    {title: 'Detail', get: (m) => m[1].health.detail}], Object.entries(mods));
  html += '<h2>Broker nodes</h2>' + table([{title: 'Node', get: (n) => n.name}, {title: 'Running', html: (n) => state(n.running ? 'ok' : 'down')},
    {title: 'Memory', num: true, get: (n) => fmtBytes(n.mem_used)}, {title: 'Disk free', num: true, get: (n) => fmtBytes(n.disk_free)}], nodes);
  const lb = mods.lb && mods.lb.status;
  if (lb) {
    html += '<h2>Load balancer</h2>' + table([{title: 'Frontend', get: (f) => f.name}, {title: 'Backend', get: (f) => f.backend},
      {title: 'Sessions', num: true, get: (f) => f.stats && f.stats.scur},
      {title: 'Max conn', num: true, get: (f) => f.maxconn}], lb.frontends || []);
    for (const b of lb.backends || []) {
      html += `<h2>Backend ${esc(b.name)} (${esc(b.balance)}) ${state(b.status)}</h2>` + table([
        {title: 'Server', get: (s) => s.name}, {title: 'Address', get: (s) => s.address},
        {title: 'Status', html: (s) => state(s.status)},
        {title: 'Weight', num: true, get: (s) => s.weight}, {title: 'Backup', get: (s) => s.backup ? 'yes' : ''},
        {title: 'Health check', get: (s) => [s.check_status, s.check_desc].filter(Boolean).join(': ')},
        {title: 'Sessions', num: true, get: (s) => s.stats && s.stats.scur},
        {title: 'Last change', num: true, get: (s) => s.last_change_s + ' s'}], b.servers || []);
    }
  } else {
    html += '<h2>Load balancer</h2><p>This node runs no lb role.</p>';
  }
  const vrrp = mods.vrrp && mods.vrrp.status;
  if (vrrp) {
    html += '<h2>Virtual IPs (VRRP)</h2>' + table([{title: 'Instance', get: (i) => i.name}, {title: 'Interface', get: (i) => i.interface},
      {title: 'VRID', num: true, get: (i) => i.vrid}, {title: 'State', html: (i) => state(String(i.state).toUpperCase())},
      {title: 'Priority', num: true, get: (i) => `${i.effective_priority} (${i.priority})`},
      {title: 'Holder (master)', get: (i) => i.master}, {title: 'Last transition', get: (i) => i.last_transition
        ? `${i.last_transition.from} → ${i.last_transition.to}: ${i.last_transition.reason}` : ''}], vrrp.instances || []);
  } else {
    html += '<h2>Virtual IPs (VRRP)</h2><p>This node runs no vip role.</p>';
  }
  $('#page').innerHTML = html;
};

// ---- shell ----------------------------------------------------------------------------

async function render() {
  clearTimeout(timer);
  const gen = ++renderGen;
  if (!auth) return showLogin();
  const [name, ...args] = (location.hash.replace(/^#\//, '') || 'overview').split('/').map(decodeURIComponent);
  const page = pages[name] ? name : 'overview';
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  // Forms being filled in are not redrawn under the user's hands.
  const typing = document.activeElement && /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
  if (!typing) {
    try {
      await pages[page](args);
    } catch (e) {
      if (e === STALE) return;
      if (e.status === 401 && e.reason === 'Login failed') return logout();
      $('#page').innerHTML = `<h1>${esc(page)}</h1><p class="error">${esc(e.reason || e.message || e)}</p>`;
    }
  }
  if (gen === renderGen) timer = setTimeout(render, REFRESH_MS);
}

function showLogin() {
  $('#login').hidden = false;
  $('#nav').hidden = true;
  $('#who').hidden = true;
  $('#page').innerHTML = '';
}

function logout() {
  auth = null;
  sessionStorage.removeItem('mqnode-auth');
  showLogin();
}

$('#login').onsubmit = async (ev) => {
  ev.preventDefault();
  const f = formValues(ev.target);
  auth = btoa(unescape(encodeURIComponent(f.username + ':' + f.password)));
  try {
    const me = await api('GET', 'whoami');
    sessionStorage.setItem('mqnode-auth', auth);
    $('#login-error').textContent = '';
    start(me);
  } catch (e) {
    auth = null;
    $('#login-error').textContent = e.reason || 'Login failed';
  }
};

function start(me) {
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#who').hidden = false;
  $('#user').textContent = `User ${me.name} (${(me.tags || []).join(', ')})`;
  render();
}

$('#logout').onclick = logout;
window.onhashchange = () => render();
if (auth) api('GET', 'whoami').then(start, logout); else showLogin();
