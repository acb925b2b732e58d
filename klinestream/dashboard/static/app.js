// Klinestream dashboard: loads a window of one trader's hours, then every 2 s asks only for the hours after the
// newest one it holds (/api/window?after=); zooming out past the oldest hour asks for the hours before it
// (?before=). The overview of all traders and the session (login, kill switch) are polled beside it.
"use strict";
import { hour } from "./format.js";
import { createTraderChart, drawChart } from "./chart.js";
import { renderOverview, renderOrders, renderDecisions, renderCards } from "./tables.js";

const POLL_MS = 2000;
// ?trader=&symbol=&since= in the page's URL (the demo prints such a link) choose the trader and the P&L start
const query = new URLSearchParams(window.location.search);
const state = {
  trader: query.get("trader"), symbol: query.get("symbol"), since: query.get("since"),
  rows: null, cursor: null, start: null, older: false, loading: false, base: null, kill: { trader: false, all: false },
  filter: "all", session: { login_enabled: false, logged_in: false, csrf: null }, generation: 0,
};
// an answer that arrives after the user chose another trader is dropped
class Superseded extends Error {}
function current(generation) { if (generation !== state.generation) throw new Superseded(); }

function emptyRows() {
  return { candles: new Map(), closes: new Map(), decisions: new Map(), orders: new Map(), positions: new Map(), changes: new Map() };
}

async function getJson(path, extra) {
  const params = new URLSearchParams(extra || {});
  if (state.trader) params.set("trader", state.trader);
  if (state.trader && state.symbol) params.set("symbol", state.symbol);
  const response = await fetch(`${path}?${params}`, { credentials: "same-origin" });
  if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.statusText);
  return response.json();
}

async function postJson(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.session.csrf) headers["X-CSRF-Token"] = state.session.csrf;
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

function merge(body) {
  const rows = state.rows;
  for (const c of body.candles) { rows.candles.set(c.open_time, c); rows.closes.delete(c.open_time); }
  for (const [t, p] of body.closes) if (!rows.candles.has(t)) rows.closes.set(t, p);
  for (const d of body.decisions) rows.decisions.set(`${d.open_time}|${d.model_version}`, d);
  for (const o of body.orders) rows.orders.set(o.client_order_id, o);
  for (const p of body.positions) rows.positions.set(p.open_time, p);
  for (const c of body.model_changes) rows.changes.set(c.open_time, c);
  state.kill = body.kill_switch;
}

const sorted = (map, key) => [...map.values()].sort((a, b) => key(a) - key(b));

// Everything the chart, the cards and the tables draw, from the rows the page holds.
function derived() {
  const rows = state.rows;
  const positions = sorted(rows.positions, p => p.open_time);
  let peak = -Infinity;
  const drawdown = positions.map(p => { peak = Math.max(peak, p.equity); return [p.open_time, p.equity / peak - 1]; });
  const out = {
    candles: sorted(rows.candles, c => c.open_time), closes: [...rows.closes.entries()].sort((a, b) => a[0] - b[0]),
    decisions: sorted(rows.decisions, d => d.open_time), orders: sorted(rows.orders, o => o.open_time),
    changes: sorted(rows.changes, c => c.open_time), positions, drawdown, byHour: new Map(),
  };
  const at = t => {
    if (!out.byHour.has(t)) out.byHour.set(t, { decisions: [], orders: [] });
    return out.byHour.get(t);
  };
  for (const c of out.candles) at(c.open_time).candle = c;
  for (const [t, p] of out.closes) at(t).close = p;
  for (const d of out.decisions) at(d.open_time).decisions.push(d);
  for (const o of out.orders) at(o.open_time).orders.push(o);
  for (const [i, p] of positions.entries()) Object.assign(at(p.open_time), { position: p, drawdown: drawdown[i][1] });
  for (const c of out.changes) at(c.open_time).change = c;
  return out;
}

function render(first) {
  const view = derived();
  drawChart(chart, view, first);
  renderOrders(view.orders, state.filter);
  renderDecisions(view.decisions);
  renderCards({ last: view.positions.at(-1), decision: view.decisions.at(-1), base: state.base, drawdown: view.drawdown, kill: state.kill });
  const changes = view.changes.map(c => `${hour(c.open_time)} v${c.from ?? "?"} → v${c.to}`);
  document.getElementById("model-changes").textContent = changes.length ? "model changes in view: " + changes.join(" · ") : "no model change in view";
  const first_ = view.positions[0], last = view.positions.at(-1);
  document.getElementById("range").textContent = first_ ? `${hour(first_.open_time)} → ${hour(last.open_time)} UTC, ${view.positions.length} hours loaded` : "";
  document.getElementById("load-older").disabled = !state.older;
  const lastHour = view.decisions.length ? "last decision " + hour(view.decisions.at(-1).open_time) + " UTC" : "no decision yet";
  setStatus(`${state.trader} · ${state.symbol} · ${lastHour}`);
}

function setStatus(text, error) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.className = "status" + (error ? " error" : "");
}

async function firstLoad() {
  const generation = state.generation;
  const body = await getJson("/api/window", state.since ? { since: state.since } : {});
  current(generation);
  [state.trader, state.symbol] = [body.trader_id, body.symbol];
  state.rows = emptyRows();
  state.base = body.base;
  state.start = body.start;
  state.cursor = body.cursor;
  state.older = body.older;
  merge(body);
  render(true);
}

async function refreshWindow() {
  if (state.rows === null || state.cursor === null) return firstLoad();
  const generation = state.generation;
  let body;
  do {
    body = await getJson("/api/window", { after: state.cursor });
    current(generation);
    merge(body);
    state.cursor = body.cursor;
  } while (body.truncated);
  render(false);
}

async function loadOlder() {
  if (!state.older || state.loading || state.rows === null) return;
  state.loading = true;
  const generation = state.generation;
  try {
    const body = await getJson("/api/window", { before: state.start });
    current(generation);
    merge(body);
    state.start = body.start;
    state.older = body.older;
    render(false);
  } finally {
    state.loading = false;
  }
}

async function refreshOverview() {
  const body = await getJson("/api/overview");
  renderOverview(body, state, selectTrader);
  const select = document.getElementById("trader");
  const options = body.traders.map(t => `${t.trader_id}|${t.symbol}`);
  if (select.options.length !== options.length || [...select.options].some((o, i) => o.value !== options[i])) {
    select.replaceChildren(...body.traders.map(t => new Option(`${t.trader_id} · ${t.symbol}`, `${t.trader_id}|${t.symbol}`)));
  }
  if (state.trader) select.value = `${state.trader}|${state.symbol}`;
}

function selectTrader(trader, symbol) {
  if (trader === state.trader && symbol === state.symbol) return;
  [state.trader, state.symbol] = [trader, symbol];
  state.since = null;  // a ?since= chosen for one trader's replay means nothing for another
  state.rows = null;
  state.generation += 1;
  tick();
}

// --- the login and the kill switch ----------------------------------------------------------------------
async function refreshSession() {
  state.session = await getJson("/api/session");
  const { login_enabled: enabled, logged_in: inside } = state.session;
  document.getElementById("login").hidden = !enabled || inside;
  document.getElementById("logout").hidden = !inside;
  document.getElementById("kill-controls").hidden = !inside;
  document.getElementById("access-note").textContent = !enabled ? "read-only (no KLINESTREAM_DASHBOARD_PASSWORD: controls off)"
    : inside ? "logged in: controls on" : "log in for the kill switch";
  const kill = state.kill;
  document.getElementById("kill-trader").textContent = kill.trader && !kill.all ? "resume this trader" : "stop this trader";
  document.getElementById("kill-all").textContent = kill.all ? "resume all traders" : "stop all traders";
}

async function setKillSwitch(allTraders) {
  const active = allTraders ? !state.kill.all : !(state.kill.trader && !state.kill.all);
  const reason = `${active ? "stopped" : "resumed"} from the dashboard`;
  try {
    await postJson("/api/kill-switch", { active, trader_id: allTraders ? null : state.trader, reason });
    await refreshWindow();
    await refreshSession();
  } catch (error) { setStatus("kill switch: " + error.message, true); }
}

document.getElementById("login").addEventListener("submit", async event => {
  event.preventDefault();
  const input = document.getElementById("password");
  try {
    await postJson("/api/login", { password: input.value });
    input.value = "";
    await refreshSession();
    if (state.rows === null) tick();
  } catch (error) { setStatus("login: " + error.message, true); }
});
document.getElementById("logout").addEventListener("click", async () => {
  try { await postJson("/api/logout", {}); } catch (error) { setStatus("logout: " + error.message, true); }
  await refreshSession();
});
document.getElementById("kill-trader").addEventListener("click", () => setKillSwitch(false));
document.getElementById("kill-all").addEventListener("click", () => setKillSwitch(true));
document.getElementById("trader").addEventListener("change", event => selectTrader(...event.target.value.split("|")));
document.getElementById("order-filter").addEventListener("change", event => { state.filter = event.target.value; if (state.rows) render(false); });
const older = () => loadOlder().catch(error => { if (!(error instanceof Superseded)) setStatus(error.message, true); });
document.getElementById("load-older").addEventListener("click", older);

const chart = createTraderChart(document.getElementById("chart"), document.getElementById("tooltip"), older);
window.klinestream = { state, chart };  // for the browser test and the curious

let busy = false;
async function tick() {
  if (busy) return;
  busy = true;
  try {
    await refreshSession();
    await refreshWindow();
    await refreshOverview();
  } catch (error) {
    if (!(error instanceof Superseded)) setStatus("waiting: " + error.message, true);
  } finally {
    busy = false;
  }
}
tick();
setInterval(tick, POLL_MS);
