// Number and time formats shared by the chart and the tables.
"use strict";

export function hour(ms) { return new Date(ms).toISOString().slice(0, 16).replace("T", " "); }
export function money(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return (x < 0 ? "−$" : "$") + Math.abs(x).toLocaleString("en-US", { maximumFractionDigits: 0 });
}
export function signedMoney(x) { return x > 0 ? "+" + money(x) : money(x); }
export function fixed(x, n) { return x === null || x === undefined ? "–" : Number(x).toFixed(n); }
export function percent(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(2) + "%"; }
export function age(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function esc(text) { return String(text ?? "").replace(/[&<>"']/g, c => ESCAPES[c]); }
