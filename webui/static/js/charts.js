// Line charts drawn as SVG (no library, nothing from another origin): one
// line per series, a time axis, and a hover readout of every series at
// the nearest sample. Text goes in as text nodes only.
import { el } from "./util.js";

const NS = "http://www.w3.org/2000/svg";
const W = 400, H = 150, L = 62, R = 8, T = 8, B = 22;

// The colour of task i's line (a palette that stays apart in print too).
export const taskColors = ["#1f6feb", "#e8590c", "#2f9e44", "#ae3ec9", "#c92a2a", "#1098ad", "#f08c00", "#5c7cfa", "#d6336c", "#495057"];
export const colorOf = (i) => taskColors[i % taskColors.length];

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// lineChart draws series [{label, color, points: [[ms, value], ...]}] with
// fmt(value) for the axis and the readout. yMax is the least top of the
// y axis (a limit, say); id names the chart for tests.
export function lineChart({ id, title, series, fmt, yMax = 0, empty }) {
  const box = el("div", { class: "chart", id, dataset: { series: series.filter((s) => s.points.length).length } });
  box.append(el("h3", {}, title));
  const pts = series.flatMap((s) => s.points);
  if (pts.length === 0) {
    box.append(el("div", { class: "chart-empty muted small" }, empty));
    return box;
  }
  let t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]));
  if (t1 - t0 < 1000) t1 = t0 + 1000;
  let top = Math.max(yMax, ...pts.map((p) => p[1]));
  if (!(top > 0)) top = 1;
  top *= 1.08;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": title });
  for (const f of [0, 0.5, 1]) {
    const v = (top / 1.08) * f;
    g.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, fmt(v)));
  }
  const hhmmss = (t) => new Date(t).toLocaleTimeString();
  g.append(svg("text", { x: L, y: H - 6, class: "axis" }, hhmmss(t0)),
    svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "axis" }, hhmmss(t1)));
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    g.append(svg("path", { d, class: "series", stroke: s.color, "data-label": s.label }));
    if (s.points.length === 1) g.append(svg("circle", { cx: x(s.points[0][0]), cy: y(s.points[0][1]), r: 2.5, fill: s.color }));
  }
  const cursor = svg("line", { y1: T, y2: H - B, class: "cursor", visibility: "hidden" });
  g.append(cursor);
  const tip = el("div", { class: "chart-tip", hidden: true });
  const legend = el("div", { class: "legend" }, series.filter((s) => s.points.length).map((s) =>
    el("span", { class: "key" }, svgSwatch(s.color), s.label)));
  const plot = el("div", { class: "chart-plot" }, g, tip);
  box.append(plot, legend);
  // Hover: the nearest sample of every series to the pointer's time.
  g.addEventListener("mousemove", (ev) => {
    const r = g.getBoundingClientRect();
    const px = ((ev.clientX - r.left) / r.width) * W;
    if (px < L || px > W - R) return hide();
    const t = t0 + ((px - L) / (W - L - R)) * (t1 - t0);
    const rows = [];
    let at = null;
    for (const s of series) {
      if (!s.points.length) continue;
      let best = s.points[0];
      for (const p of s.points) if (Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
      if (at === null || Math.abs(best[0] - t) < Math.abs(at - t)) at = best[0];
      rows.push(el("div", { class: "tip-row" }, svgSwatch(s.color), el("span", {}, s.label), el("strong", {}, fmt(best[1], best))));
    }
    cursor.setAttribute("x1", x(at));
    cursor.setAttribute("x2", x(at));
    cursor.setAttribute("visibility", "visible");
    tip.replaceChildren(el("div", { class: "tip-time" }, hhmmss(at)), ...rows);
    tip.hidden = false;
    const left = ((x(at) / W) * r.width) + 12;
    tip.style.left = `${Math.min(left, r.width - 170)}px`;
  });
  const hide = () => {
    cursor.setAttribute("visibility", "hidden");
    tip.hidden = true;
  };
  g.addEventListener("mouseleave", hide);
  return box;
}

function svgSwatch(color) {
  return svg("svg", { width: 10, height: 10, class: "swatch" }, svg("rect", { width: 10, height: 10, rx: 2, fill: color }));
}
