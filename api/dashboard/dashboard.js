// The live dashboard of presenced: plain JavaScript, no build step. The
// numbers come from the subscription connectedUsersIndicatorUpdated over a
// WebSocket speaking graphql-transport-ws (the Client below); the breakdown
// and the list of users are queries sent over the same socket; the chart
// reads GET /api/history.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var tokenMode = document.body.getAttribute('data-auth') === 'token';
  var credKey = tokenMode ? 'presenced.token' : 'presenced.tenant'; // shared with GraphiQL
  var cred = $('cred');
  function load(k) { try { return localStorage.getItem(k) || ''; } catch (e) { return ''; } }
  function store(k, v) { try { localStorage.setItem(k, v); } catch (e) { /* storage off */ } }
  cred.value = load(credKey);

  // ---- graphql-transport-ws ----
  // Operations survive reconnections: each is sent again after the next
  // connection_ack. A query is an operation answered by one next.
  function Client(onState) { this.ops = {}; this.seq = 0; this.retry = 0; this.onState = onState; }
  Client.prototype.connect = function () {
    var self = this;
    clearTimeout(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(1000); }
    this.acked = false;
    var ws = this.ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql', 'graphql-transport-ws');
    this.onState('connecting');
    ws.onopen = function () { ws.send(JSON.stringify({ type: 'connection_init', payload: initPayload() })); };
    ws.onmessage = function (ev) {
      var m = JSON.parse(ev.data), op = m.id && self.ops[m.id];
      if (m.type === 'connection_ack') {
        self.acked = true; self.retry = 0; self.onState('live');
        for (var id in self.ops) { self.send(id); }
      } else if (m.type === 'ping') {
        ws.send(JSON.stringify({ type: 'pong' }));
      } else if (op && m.type === 'next') {
        op.next(m.payload);
      } else if (op && (m.type === 'error' || m.type === 'complete')) {
        delete self.ops[m.id];
        if (m.type === 'error') { op.error(m.payload); }
      }
    };
    ws.onclose = function (ev) {
      self.acked = false;
      if (ev.code === 4403) { self.onState('forbidden', ev.reason); return; }
      self.onState('closed', ev.reason || 'connection lost (' + ev.code + ')');
      self.timer = setTimeout(function () { self.connect(); }, Math.min(10000, 500 * Math.pow(2, self.retry++)));
    };
  };
  Client.prototype.send = function (id) {
    var op = this.ops[id];
    this.ws.send(JSON.stringify({ id: id, type: 'subscribe', payload: { query: op.query, variables: op.variables } }));
  };
  // subscribe starts an operation; sink has next(payload) and error(errors).
  Client.prototype.subscribe = function (query, variables, sink) {
    var id = String(++this.seq);
    this.ops[id] = { query: query, variables: variables, next: sink.next, error: sink.error };
    if (this.acked) { this.send(id); }
    return id;
  };
  Client.prototype.complete = function (id) {
    if (!this.ops[id]) { return; }
    delete this.ops[id];
    if (this.acked) { this.ws.send(JSON.stringify({ id: id, type: 'complete' })); }
  };

  function initPayload() {
    var v = cred.value.trim();
    if (!v) { return {}; }
    return tokenMode ? { Authorization: 'Bearer ' + v } : { 'X-Tenant-Id': v };
  }
  function authHeaders() {
    var v = cred.value.trim(), h = {};
    if (v) { if (tokenMode) { h.Authorization = 'Bearer ' + v; } else { h['X-Tenant-Id'] = v; } }
    return h;
  }

  // ---- state and rendering ----
  var INDICATOR = 'connectedUsersCount countByChatAvailabilityStatus { available busy toggleOff } ' +
    'usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }';
  var LIVE = 'subscription Live($f: ConnectedUsersIndicatorFilters) { connectedUsersIndicatorUpdated(filters: $f) { ' + INDICATOR + ' } }';
  var BREAKDOWN = 'query Breakdown($by: IndicatorDimension!, $f: ConnectedUsersIndicatorFilters) { ' +
    'connectedUsersIndicatorBreakdown(by: $by, filters: $f) { key indicator { ' + INDICATOR + ' } } }';
  var USERS = 'query Users($f: ConnectedUsersIndicatorFilters, $first: Int, $after: String, $order: ConnectedUserOrder) { ' +
    'connectedUsers(filters: $f, first: $first, after: $after, orderBy: $order) { totalCount ' +
    'edges { cursor node { userId role availabilityStatus chatAvailability maxSlots currentSlots ' +
    'connectedAt availabilityStatusUpdatedAt chatAvailabilityUpdatedAt } } pageInfo { hasNextPage endCursor } } }';
  var PAGE = 20;
  var client = new Client(setStatus), liveId = null, updates = 0;
  // The list's pages: the cursor each one starts after (null: the first).
  var starts = [null], next = null;

  function setStatus(state, why) {
    var s = $('status');
    s.setAttribute('data-state', state);
    s.textContent = { live: 'live', connecting: 'connecting…', closed: 'reconnecting', forbidden: 'token refused' }[state];
    s.title = why || '';
    if (state === 'forbidden') { askToken('The token was refused: ' + (why || 'forbidden') + '.'); }
  }
  function showErrors(errors) {
    var e = $('error');
    e.textContent = (errors || []).map(function (x) { return x.message; }).join('; ');
    e.hidden = !e.textContent;
  }
  function filters() {
    var f = {};
    document.querySelectorAll('#filters fieldset').forEach(function (fs) {
      var on = [];
      fs.querySelectorAll('input:checked').forEach(function (i) { on.push(i.value); });
      if (on.length) { f[fs.getAttribute('data-field')] = on; }
    });
    document.querySelectorAll('#filters input[type=text]').forEach(function (i) {
      var ids = i.value.split(/[\s,]+/).filter(Boolean);
      if (ids.length) { f[i.getAttribute('data-field')] = ids; }
    });
    return f;
  }
  function num(n) { return Math.round(n).toLocaleString('en-US'); }
  function dec(x, d) { return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }); }
  function put(id, value, text) { var el = $(id); el.setAttribute('data-value', String(value)); el.textContent = text; }

  function render(ind) {
    var c = ind.countByChatAvailabilityStatus, o = ind.usersInProductionChatOccupancy;
    put('connected', ind.connectedUsersCount, num(ind.connectedUsersCount));
    put('available', c.available, num(c.available));
    put('busy', c.busy, num(c.busy));
    put('toggleOff', c.toggleOff, num(c.toggleOff));
    put('occupancyRate', o.occupancyRate, dec(o.occupancyRate, 1) + ' %');
    put('currentAvg', o.simultaneousConversationAverage, dec(o.simultaneousConversationAverage, 2));
    put('maxAvg', o.maximumSimultaneousConversationAverage, dec(o.maximumSimultaneousConversationAverage, 2));
    var total = c.available + c.busy + c.toggleOff;
    ['available', 'busy', 'toggleOff'].forEach(function (k) {
      $('bar-' + k).style.width = (total ? 100 * c[k] / total : 0) + '%';
    });
    document.body.setAttribute('data-updates', String(++updates));
  }

  function subscribeLive() {
    if (liveId) { client.complete(liveId); }
    liveId = client.subscribe(LIVE, { f: filters() }, {
      next: function (p) {
        if (p.errors) { showErrors(p.errors); }
        if (p.data) {
          if (!p.errors) { showErrors([]); }
          render(p.data.connectedUsersIndicatorUpdated);
          refreshBreakdown();
          refreshUsers();
        }
      },
      error: showErrors
    });
    starts = [null];
    refreshBreakdown();
    refreshUsers();
  }

  // oneAtATime returns a function that runs ask(done) unless a run is under
  // way, in which case it runs once more after it.
  function oneAtATime(ask) {
    var busy = false, again = false;
    return function run() {
      if (busy) { again = true; return; }
      busy = true;
      ask(function () {
        busy = false;
        if (again) { again = false; run(); }
      });
    };
  }
  // query asks one query over the socket and hands its data to show.
  function query(q, variables, show, done) {
    client.subscribe(q, variables, {
      next: function (p) {
        if (p.data) { show(p.data); }
        if (p.errors) { showErrors(p.errors); }
        done();
      },
      error: function (e) { showErrors(e); done(); }
    });
  }
  var refreshBreakdown = oneAtATime(function (done) {
    var by = $('by').value;
    query(BREAKDOWN, { by: by, f: filters() }, function (d) { renderBreakdown(d.connectedUsersIndicatorBreakdown, by); }, done);
  });
  var refreshUsers = oneAtATime(function (done) {
    var order = $('order').value, page = starts.length - 1;
    query(USERS, { f: filters(), first: PAGE, after: starts[page], order: order }, function (d) {
      renderUsers(d.connectedUsers, order, page);
    }, done);
  });
  function renderBreakdown(rows, by) {
    var tb = $('breakdown').tBodies[0];
    tb.textContent = '';
    $('breakdown').setAttribute('data-by', by);
    $('breakdown').setAttribute('data-rows', String(rows.length));
    if (!rows.length) {
      var tr = tb.insertRow(), td = tr.insertCell();
      td.colSpan = 7; td.className = 'empty'; td.textContent = 'no connected user matches';
      return;
    }
    rows.forEach(function (r) {
      var i = r.indicator, c = i.countByChatAvailabilityStatus, o = i.usersInProductionChatOccupancy;
      var tr = tb.insertRow();
      tr.setAttribute('data-key', r.key);
      tr.setAttribute('data-connected', String(i.connectedUsersCount));
      [r.key, num(i.connectedUsersCount), num(c.available), num(c.busy), num(c.toggleOff)].forEach(function (t) {
        tr.insertCell().textContent = t;
      });
      var occ = tr.insertCell(), meter = document.createElement('span'), fill = document.createElement('i');
      meter.className = 'meter'; fill.style.width = Math.min(100, o.occupancyRate) + '%';
      meter.appendChild(fill); occ.appendChild(meter);
      occ.appendChild(document.createTextNode(dec(o.occupancyRate, 1) + ' %'));
      tr.insertCell().textContent = dec(o.simultaneousConversationAverage, 2);
    });
  }

  // since writes how long ago an RFC 3339 time was: "45 s", "12 min",
  // "3 h 05", "2 d".
  function since(iso) {
    if (!iso) { return 'never set'; }
    var s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) { return s + ' s'; }
    if (s < 3600) { return Math.floor(s / 60) + ' min'; }
    if (s < 86400) { return Math.floor(s / 3600) + ' h ' + ('0' + Math.floor(s % 3600 / 60)).slice(-2); }
    return Math.floor(s / 86400) + ' d';
  }
  function renderUsers(c, order, page) {
    var table = $('users'), tb = table.tBodies[0], edges = c.edges;
    tb.textContent = '';
    table.setAttribute('data-order', order);
    table.setAttribute('data-total', String(c.totalCount));
    table.setAttribute('data-page', String(page));
    next = c.pageInfo.hasNextPage ? c.pageInfo.endCursor : null;
    $('users-next').disabled = !next;
    $('users-prev').disabled = page === 0;
    var from = page * PAGE;
    $('users-range').textContent = edges.length ? (from + 1) + '–' + (from + edges.length) + ' of ' + num(c.totalCount) : 'no connected user matches';
    if (!edges.length) {
      var tr = tb.insertRow(), td = tr.insertCell();
      td.colSpan = 6; td.className = 'empty'; td.textContent = 'no connected user matches';
      return;
    }
    edges.forEach(function (e) {
      var u = e.node, tr = tb.insertRow();
      tr.setAttribute('data-user', u.userId);
      [u.userId, (u.role || '–').toLowerCase(),
        u.availabilityStatus.toLowerCase().replace('_', ' ') + ' · ' + since(u.availabilityStatusUpdatedAt),
        u.chatAvailability.toLowerCase().replace('_', ' ') + ' · ' + since(u.chatAvailabilityUpdatedAt),
        u.currentSlots + ' / ' + u.maxSlots, since(u.connectedAt)].forEach(function (t) {
        tr.insertCell().textContent = t;
      });
    });
  }

  // ---- chart: the last 15 minutes from GET /api/history ----
  var history = { samples: [], windowSeconds: 900 };
  function fetchHistory() {
    if (tokenMode && !cred.value.trim()) { return; }
    fetch('api/history', { headers: authHeaders(), credentials: 'same-origin' }).then(function (res) {
      if (res.status === 401 && tokenMode) { askToken('The token was refused.'); }
      return res.ok ? res.json() : null;
    }).then(function (h) { if (h) { history = h; drawChart(); } }).catch(function () { /* next time */ });
  }
  // niceStep is the grid step for four steps up to at least v: 1, 2, 2.5
  // or 5 times a power of ten.
  function niceStep(v) {
    var raw = Math.max(v, 4) / 4, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  }
  function drawChart() {
    var cv = $('chart'), dpr = window.devicePixelRatio || 1, w = cv.clientWidth, h = cv.clientHeight;
    cv.width = w * dpr; cv.height = h * dpr;
    var g = cv.getContext('2d'), s = history.samples || [];
    g.scale(dpr, dpr);
    g.font = '11px system-ui, sans-serif';
    cv.setAttribute('data-samples', String(s.length));
    var L = 44, R = 44, T = 8, B = 22, pw = w - L - R, ph = h - T - B;
    var end = s.length ? s[s.length - 1].t : Date.now(), span = history.windowSeconds * 1000, start = end - span;
    var top = 4 * niceStep(Math.max.apply(null, [0].concat(s.map(function (x) { return x.connected; }))));
    var x = function (t) { return L + pw * (t - start) / span; };
    var yl = function (v) { return T + ph * (1 - v / top); }, yr = function (v) { return T + ph * (1 - Math.min(v, 100) / 100); };
    g.strokeStyle = '#e3e7ee'; g.fillStyle = '#6b7685'; g.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var y = Math.round(T + ph * i / 4) + 0.5;
      g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
      g.textAlign = 'right'; g.fillText(num(top * (4 - i) / 4), L - 6, y + 4);
      g.textAlign = 'left'; g.fillText((100 * (4 - i) / 4) + ' %', L + pw + 6, y + 4);
    }
    g.textAlign = 'center';
    for (var m = 0; m <= 15; m += 5) {
      var t = start + m * 60000, d = new Date(t);
      g.fillText(('0' + d.getHours()).slice(-2) + ':' + ('0' + d.getMinutes()).slice(-2), x(t), h - 6);
    }
    if (!s.length) { g.fillText('no samples yet', L + pw / 2, T + ph / 2); return; }
    function line(color, y, pick, dash) {
      g.strokeStyle = color; g.lineWidth = 2; g.setLineDash(dash || []); g.beginPath();
      s.forEach(function (p, k) { var px = x(p.t), py = y(pick(p)); if (k) { g.lineTo(px, py); } else { g.moveTo(px, py); } });
      g.stroke();
    }
    line('#3567d6', yl, function (p) { return p.connected; });
    line('#21956a', yl, function (p) { return p.available; });
    line('#d9622b', yr, function (p) { return p.occupancyRate; }, [5, 3]);
    g.setLineDash([]);
  }

  // ---- wiring ----
  function askToken(why) {
    $('login-why').textContent = why || $('login-why').textContent;
    $('login').hidden = false;
    $('login-token').focus();
  }
  $('login').querySelector('form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    cred.value = $('login-token').value.trim();
    $('login').hidden = true;
    cred.dispatchEvent(new Event('change'));
  });
  cred.addEventListener('change', function () {
    store(credKey, cred.value.trim());
    client.connect();
    fetchHistory();
  });
  var debounce;
  $('filters').addEventListener('input', function () { clearTimeout(debounce); debounce = setTimeout(subscribeLive, 300); });
  $('filters').addEventListener('submit', function (ev) { ev.preventDefault(); });
  $('by').addEventListener('change', refreshBreakdown);
  $('order').addEventListener('change', function () { starts = [null]; refreshUsers(); });
  $('users-next').addEventListener('click', function () { if (next) { starts.push(next); refreshUsers(); } });
  $('users-prev').addEventListener('click', function () { if (starts.length > 1) { starts.pop(); refreshUsers(); } });
  window.addEventListener('resize', drawChart);

  subscribeLive();
  if (tokenMode && !cred.value) { askToken(); } else { client.connect(); }
  fetchHistory();
  setInterval(fetchHistory, 5000);
})();
