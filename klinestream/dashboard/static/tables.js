// The page's tables and cards: the traders' overview, every order, the latest decisions, the headline figures.
"use strict";
import { hour, money, signedMoney, fixed, percent, age } from "./format.js";

function row(cells, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  return tr;
}
const sign = x => (x > 0 ? "pos" : x < 0 ? "neg" : "");

export function renderOverview(body, selected, onSelect) {
  const tbody = document.querySelector("#overview tbody");
  tbody.replaceChildren(...body.traders.map(t => {
    const last = t.last_decision;
    const lastText = last ? `${hour(last.open_time)} ${last.action} v${last.model_version}${last.degraded ? " (degraded)" : ""}` : "–";
    const healthText = t.health.status + (t.health.age_s === null ? "" : ` · ${age(t.health.age_s)}`);
    const vs = t.pnl - t.buy_hold_pnl;
    const tr = row([[t.trader_id], [t.symbol], [money(t.equity)], [signedMoney(t.pnl), sign(t.pnl)],
      [signedMoney(t.buy_hold_pnl), sign(t.buy_hold_pnl)], [signedMoney(vs), sign(vs)], [fixed(t.units, 4)],
      [lastText], [healthText, `health-${t.health.status.replace(" ", "-")}`],
      [t.kill_switch ? "ON" : "off", t.kill_switch ? "on" : "off"]], "trader");
    tr.dataset.trader = t.trader_id;
    tr.dataset.symbol = t.symbol;
    if (selected && selected.trader === t.trader_id && selected.symbol === t.symbol) tr.classList.add("selected");
    tr.addEventListener("click", () => onSelect(t.trader_id, t.symbol));
    return tr;
  }));
  const note = `P&L since each trader's first hour; health: ok while its last decision was written less than ` +
    `${Math.round(body.stale_after_s / 60)} min ago, stale after` + (body.more ? ` · ${body.more} more traders not shown` : "");
  document.getElementById("overview-note").textContent = note;
}

export function renderOrders(orders, filter) {
  const counts = {};
  for (const o of orders) counts[o.status] = (counts[o.status] || 0) + 1;
  const shown = orders.filter(o => filter === "all" || o.status === filter).reverse();
  document.querySelector("#orders tbody").replaceChildren(...shown.map(o => row([
    [hour(o.open_time)], [o.side], [o.status, `status-${o.status}`], [o.reason || "–"], [fixed(o.quantity, 4)],
    [fixed(o.price, 2)], [o.status === "filled" ? fixed(o.fill_price, 2) : "–"], [fixed(o.fee, 2)], ["v" + o.model_version],
  ], `order status-${o.status}`)));
  const parts = Object.entries(counts).sort().map(([status, n]) => `${n} ${status}`);
  document.getElementById("order-counts").textContent = `${orders.length} in view` + (parts.length ? ": " + parts.join(", ") : "");
}

export function renderDecisions(decisions) {
  const latest = decisions.slice(-15).reverse();
  document.querySelector("#decisions tbody").replaceChildren(...latest.map(d => row([
    [hour(d.open_time)], [d.action, "action-" + d.action], [d.greedy || "–"], [fixed(d.price, 2)],
    [d.q.map(q => fixed(q, 2)).join("/")], [fixed(d.epsilon, 3)], [String(d.online_updates)], ["v" + d.model_version],
    [d.order_status || "–"],
  ], "decision")));
}

function setCard(id, text, cls) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.className = "value" + (cls ? " " + cls : "");
}

export function renderCards(view) {
  const { last, decision, base, drawdown, kill } = view;
  const pnl = last ? last.equity - base.start_equity : null;
  const bh = last && last.buy_hold_equity !== null ? last.buy_hold_equity - base.start_buy_hold : null;
  setCard("c-equity", last ? money(last.equity) : "–");
  document.getElementById("c-pnl-label").textContent = base.since ? `P&L since ${hour(base.since)}` : "P&L since start";
  setCard("c-pnl", pnl === null ? "–" : signedMoney(pnl), sign(pnl));
  setCard("c-bh", bh === null ? "–" : signedMoney(bh), sign(bh));
  setCard("c-units", last ? fixed(last.units, 4) : "–");
  setCard("c-drawdown", drawdown.length ? `${percent(drawdown.at(-1)[1])} / ${percent(Math.min(...drawdown.map(d => d[1])))}` : "–",
    drawdown.length && drawdown.at(-1)[1] < 0 ? "neg" : "");
  setCard("c-model", decision ? "v" + decision.model_version : "–");
  setCard("c-online", decision ? `${decision.online_updates.toLocaleString("en-US")} / ${fixed(decision.epsilon, 3)}` : "–");
  const on = kill.trader || kill.all;
  setCard("c-kill", on ? (kill.all ? "ON (all traders)" : "ON — orders stopped") : "off", on ? "on" : "off");
}
