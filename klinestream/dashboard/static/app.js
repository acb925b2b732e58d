// Klinestream dashboard: polls the JSON API every 2 s and draws the charts as hand-made SVG.
"use strict";
const SVG_NS = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;
// ?trader=&symbol=&since= in the page's URL (the demo prints such a link) choose the trader and the P&L start
const query = new URLSearchParams(window.location.search);
const state = { trader: query.get("trader"), symbol: query.get("symbol"), since: query.get("since"), listed: false };

function hour(ms) { return new Date(ms).toISOString().slice(0, 16).replace("T", " "); }
function money(x) { return (x < 0 ? "−$" : "$") + Math.abs(x).toLocaleString("en-US", { maximumFractionDigits: 0 }); }
function fixed(x, n) { return x === null || x === undefined ? "–" : Number(x).toFixed(n); }
function el(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
async function getJson(path) {
  const params = new URLSearchParams();
  if (state.trader) params.set("trader", state.trader);
  if (state.trader && state.symbol) params.set("symbol", state.symbol);
  if (state.since && path.startsWith("/api/summary")) params.set("since", state.since);
  const extra = params.toString();
  const response = await fetch(extra ? path + (path.includes("?") ? "&" : "?") + extra : path);
  if (!response.ok) throw new Error((await response.json()).error || response.statusText);
  return response.json();
}

// One chart: lines share the x range [x0, x1]; markers are [t, y] points drawn as triangles.
function drawChart(svg, lines, markers) {
  const box = svg.viewBox.baseVal, W = box.width, H = box.height, L = 70, R = 10, T = 8, B = 20;
  svg.replaceChildren();
  const points = lines.flatMap(l => l.data);
  if (points.length === 0) { svg.appendChild(el("text", { x: W / 2, y: H / 2, class: "axis" }, "no data yet")); return; }
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]).concat(markers.flatMap(m => m.data.map(p => p[1])));
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = t => L + (t - x0) / (x1 - x0) * (W - L - R), sy = v => T + (y1 - v) / (y1 - y0) * (H - T - B);
  const rows = H < 120 ? 2 : 4;
  for (let i = 0; i <= rows; i++) {
    const v = y0 + (y1 - y0) * i / rows, y = sy(v);
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
    svg.appendChild(el("text", { x: 4, y: y + 4, class: "axis" }, Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(2)));
  }
  svg.appendChild(el("text", { x: L, y: H - 4, class: "axis" }, hour(x0)));
  svg.appendChild(el("text", { x: W - R - 110, y: H - 4, class: "axis" }, hour(x1)));
  for (const line of lines) {
    if (line.data.length === 0) continue;
    const d = line.data.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    svg.appendChild(el("path", { d, class: `line ${line.cls}` }));
  }
  for (const group of markers) {
    for (const [t, v] of group.data) {
      const x = sx(t), y = sy(v), s = 5, up = group.cls === "buy";
      const pts = up ? `${x},${y - s} ${x - s},${y + s} ${x + s},${y + s}` : `${x},${y + s} ${x - s},${y - s} ${x + s},${y - s}`;
      const tri = el("polygon", { points: pts, class: `marker ${group.cls}`, "data-time": t });
      tri.appendChild(el("title", {}, `${group.cls} ${hour(t)} @ ${v.toFixed(2)}`));
      svg.appendChild(tri);
    }
  }
}

function setText(id, text, cls) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.className = "value" + (cls ? " " + cls : "");
}

function renderSummary(s) {
  setText("c-decisions", s.decisions.toLocaleString("en-US"));
  setText("c-orders", `${s.orders.buy} / ${s.orders.sell}`);
  setText("c-pnl", money(s.pnl), s.pnl >= 0 ? "pos" : "neg");
  setText("c-bh", money(s.buy_hold_pnl), s.buy_hold_pnl >= 0 ? "pos" : "neg");
  setText("c-units", fixed(s.units, 3));
  setText("c-model", s.model_version === null ? "–" : "v" + s.model_version);
  setText("c-online", `${s.online_updates.toLocaleString("en-US")} / ${fixed(s.epsilon, 3)}`);
  setText("c-kill", s.kill_switch ? "ON — orders stopped" : "off", s.kill_switch ? "on" : "off");
  const last = s.last_hour === null ? "no decision yet" : "last decision " + hour(s.last_hour) + " UTC";
  document.getElementById("status").textContent = `${s.trader_id} · ${s.symbol} · ${last}`;
  document.getElementById("status").className = "status";
}

function renderDecisions(rows) {
  const body = document.querySelector("#decisions tbody");
  body.replaceChildren(...rows.map(d => {
    const tr = document.createElement("tr");
    tr.className = "decision";
    const cells = [hour(d.open_time), d.action, d.greedy || "–", fixed(d.price, 2),
      d.q.map(q => fixed(q, 3)).join(" / "), fixed(d.epsilon, 3), d.online_updates, "v" + d.model_version,
      d.order_status || "–"];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 1) td.className = "action-" + d.action;
      tr.appendChild(td);
    });
    return tr;
  }));
}

function renderSeries(s) {
  drawChart(document.getElementById("price-chart"), [{ data: s.price, cls: "price" }],
    [{ data: s.buys, cls: "buy" }, { data: s.sells, cls: "sell" }]);
  drawChart(document.getElementById("equity-chart"),
    [{ data: s.buy_hold, cls: "bh" }, { data: s.equity, cls: "equity" }], []);
  drawChart(document.getElementById("position-chart"), [{ data: s.units, cls: "units" }], []);
}

async function loadTraders() {
  const traders = await getJson("/api/traders");
  const select = document.getElementById("trader");
  select.replaceChildren(...traders.map(t => {
    const option = document.createElement("option");
    option.value = `${t.trader_id}|${t.symbol}`;
    option.textContent = `${t.trader_id} · ${t.symbol}`;
    return option;
  }));
  if (state.trader) select.value = `${state.trader}|${state.symbol}`;
}

async function refresh() {
  try {
    if (!state.listed) {  // the URL's (or else the server's default) trader first, then the list to choose from
      const first = await getJson("/api/summary");
      [state.trader, state.symbol] = [first.trader_id, first.symbol];
      await loadTraders();
      state.listed = true;
    }
    const [summary, decisions, series] = await Promise.all(
      [getJson("/api/summary"), getJson("/api/decisions?limit=15"), getJson("/api/series")]);
    renderSummary(summary);
    renderDecisions(decisions);
    renderSeries(series);
  } catch (error) {
    const status = document.getElementById("status");
    status.textContent = "waiting: " + error.message;
    status.className = "status error";
  }
}

document.getElementById("trader").addEventListener("change", event => {
  [state.trader, state.symbol] = event.target.value.split("|");
  state.since = null;  // a ?since= chosen for one trader's replay means nothing for another
  refresh();
});
refresh();
setInterval(() => { refresh(); }, POLL_MS);
setInterval(() => { loadTraders().catch(() => {}); }, 30000);
