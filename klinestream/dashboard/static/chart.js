// The trader's chart: TradingView lightweight-charts (served from /static/vendor, built by `make install`), one
// chart with four panes sharing the time axis — candlesticks with trade and model-change markers, equity against
// buy-and-hold, drawdown, position — a tooltip that follows the crosshair, and zoom-out that asks for older hours.
"use strict";
import { hour, money, fixed, percent, esc } from "./format.js";

const LWC = window.LightweightCharts;
const COLORS = { up: "#12a150", down: "#d92d20", equity: "#1f5fbf", bh: "#8a93a6", dd: "#d92d20", units: "#7a4cc2",
  swap: "#7a4cc2", close: "#6b7385" };
const seconds = ms => Math.floor(ms / 1000);

export function createTraderChart(container, tooltip, onNeedOlder) {
  if (!LWC) throw new Error("the chart library is missing: run `make install` (it needs Node.js and npm)");
  const chart = LWC.createChart(container, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#4a5263", fontSize: 11, panes: { separatorColor: "#dde1e8" } },
    grid: { vertLines: { color: "#f1f3f6" }, horzLines: { color: "#f1f3f6" } },
    timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 3 },
    localization: { timeFormatter: t => hour(t * 1000) },
    crosshair: { mode: LWC.CrosshairMode.Normal },
  });
  const series = {
    candles: chart.addSeries(LWC.CandlestickSeries, { upColor: COLORS.up, downColor: COLORS.down, borderVisible: false,
      wickUpColor: COLORS.up, wickDownColor: COLORS.down, title: "" }, 0),
    closes: chart.addSeries(LWC.LineSeries, { color: COLORS.close, lineWidth: 1, lineStyle: LWC.LineStyle.Dotted,
      priceLineVisible: false, lastValueVisible: false }, 0),
    equity: chart.addSeries(LWC.LineSeries, { color: COLORS.equity, lineWidth: 2, priceLineVisible: false,
      priceFormat: { type: "price", precision: 0, minMove: 1 } }, 1),
    buyHold: chart.addSeries(LWC.LineSeries, { color: COLORS.bh, lineWidth: 1, lineStyle: LWC.LineStyle.Dashed,
      priceLineVisible: false, priceFormat: { type: "price", precision: 0, minMove: 1 } }, 1),
    drawdown: chart.addSeries(LWC.AreaSeries, { lineColor: COLORS.dd, topColor: "rgba(217,45,32,0.05)",
      bottomColor: "rgba(217,45,32,0.35)", lineWidth: 1, priceLineVisible: false, invertFilledArea: true,
      priceFormat: { type: "custom", minMove: 0.01, formatter: v => `${v.toFixed(2)}%` } }, 2),
    units: chart.addSeries(LWC.HistogramSeries, { color: COLORS.units, priceLineVisible: false,
      priceFormat: { type: "volume" } }, 3),
  };
  const markers = { candles: LWC.createSeriesMarkers(series.candles, []), closes: LWC.createSeriesMarkers(series.closes, []) };
  const heights = [250, 110, 80, 60];
  chart.panes().forEach((pane, i) => pane.setStretchFactor(heights[i] / 100));
  const view = { chart, series, markers, tooltip, byHour: new Map(), hours: 0, onNeedOlder };
  chart.timeScale().subscribeVisibleLogicalRangeChange(range => {
    if (!range || view.hours === 0) return;
    // a new chart passes through wider ranges before it fits its content: arm once it has settled
    if (!view.armed) { view.armed = range.from >= -2; return; }
    // past the oldest bar (fitting the content puts it at about 0): the user zoomed or panned out to the left
    if (range.from < -2) view.onNeedOlder();
  });
  chart.subscribeCrosshairMove(param => showTooltip(view, param));
  return view;
}

// What the chart draws from the page's rows (each argument sorted by hour).
export function drawChart(view, rows, first) {
  const { chart, series } = view;
  const scale = chart.timeScale();
  const before = scale.getVisibleLogicalRange();
  const oldFirst = view.firstHour, oldHours = view.hours;
  series.candles.setData(rows.candles.map(c => ({ time: seconds(c.open_time), open: c.open, high: c.high, low: c.low, close: c.close })));
  series.closes.setData(rows.closes.map(([t, p]) => ({ time: seconds(t), value: p })));
  series.equity.setData(rows.positions.map(p => ({ time: seconds(p.open_time), value: p.equity })));
  series.buyHold.setData(rows.positions.filter(p => p.buy_hold_equity !== null)
    .map(p => ({ time: seconds(p.open_time), value: p.buy_hold_equity })));
  series.drawdown.setData(rows.drawdown.map(([t, d]) => ({ time: seconds(t), value: d * 100 })));
  series.units.setData(rows.positions.map(p => ({ time: seconds(p.open_time), value: p.units })));
  drawMarkers(view, rows);
  view.byHour = rows.byHour;
  const hours = new Set([...rows.candles.map(c => c.open_time), ...rows.closes.map(c => c[0]),
    ...rows.positions.map(p => p.open_time)]);
  view.hours = hours.size;
  view.firstHour = Math.min(...hours);
  if (first || !before) { view.armed = false; scale.fitContent(); return; }
  const prepended = oldFirst === undefined ? 0 : [...hours].filter(t => t < oldFirst).length;
  const atEnd = before.to >= oldHours - 2;
  if (prepended > 0) scale.setVisibleLogicalRange({ from: before.from + prepended, to: before.to + prepended });
  else if (atEnd) scale.scrollToRealTime();
  else scale.setVisibleLogicalRange(before);
}

function drawMarkers(view, rows) {
  const onCandle = new Set(rows.candles.map(c => c.open_time));
  const lists = { candles: [], closes: [] };
  const add = (t, marker) => lists[onCandle.has(t) ? "candles" : "closes"].push({ time: seconds(t), ...marker });
  for (const o of rows.orders) {
    if (o.status !== "filled") continue;
    const buy = o.side.toUpperCase() === "BUY";
    add(o.open_time, { position: buy ? "belowBar" : "aboveBar", shape: buy ? "arrowUp" : "arrowDown",
      color: buy ? COLORS.up : COLORS.down, id: `order:${o.client_order_id}` });
  }
  for (const c of rows.changes) {
    add(c.open_time, { position: "aboveBar", shape: "square", color: COLORS.swap, text: `v${c.to}`, id: `swap:${c.open_time}` });
  }
  for (const key of ["candles", "closes"]) {
    lists[key].sort((a, b) => a.time - b.time);
    view.markers[key].setMarkers(lists[key]);
  }
}

function showTooltip(view, param) {
  const { tooltip } = view;
  const at = param.time === undefined ? undefined : view.byHour.get(param.time * 1000);
  if (!param.point || !at) { tooltip.hidden = true; return; }
  const lines = [`<b>${hour(param.time * 1000)} UTC</b>`];
  if (at.candle) {
    const c = at.candle;
    lines.push(`O ${fixed(c.open, 2)} H ${fixed(c.high, 2)} L ${fixed(c.low, 2)} C ${fixed(c.close, 2)}`);
  } else if (at.close !== undefined) lines.push(`close ${fixed(at.close, 2)} (no kline in the lake yet)`);
  for (const d of at.decisions) {
    lines.push(`decision <b>${esc(d.action)}</b> (greedy ${esc(d.greedy || "–")}), v${esc(d.model_version)}, ε ${fixed(d.epsilon, 3)}`);
  }
  for (const o of at.orders) {
    const what = o.status === "filled" ? `${fixed(o.filled_quantity, 4)} @ ${fixed(o.fill_price, 2)}` : esc(o.reason || "");
    lines.push(`order ${esc(o.side)} <b>${esc(o.status)}</b> ${what}`);
  }
  if (at.position) {
    lines.push(`equity ${money(at.position.equity)} · buy-and-hold ${money(at.position.buy_hold_equity)}`);
    lines.push(`position ${fixed(at.position.units, 4)} · drawdown ${percent(at.drawdown)}`);
  }
  if (at.change) lines.push(`model v${esc(at.change.from)} → v${esc(at.change.to)}`);
  tooltip.innerHTML = lines.join("<br>");
  tooltip.hidden = false;
  const box = tooltip.parentElement.getBoundingClientRect();
  const x = Math.min(param.point.x + 16, box.width - tooltip.offsetWidth - 4);
  tooltip.style.left = `${Math.max(4, x)}px`;
  tooltip.style.top = `${Math.max(4, param.point.y + 16)}px`;
}
