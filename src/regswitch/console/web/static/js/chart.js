// Time-series charts drawn as SVG by hand: no library, no CDN, no build step.
// A chart is an <svg> redrawn whole from its points on every change (an hour
// of 5 s samples is 720 points: cheap to redraw).

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 150;
const PAD = { left: 40, right: 8, top: 10, bottom: 20 };

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A round upper bound for the y axis: 1, 2, 5, 10, 20, 50, ... */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

const pad = (n) => String(n).padStart(2, "0");
// Minutes on an hour's axis; seconds too on a short one (a server just started).
function clock(t, withSeconds) {
  const d = new Date(t * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return withSeconds ? `${hm}:${pad(d.getSeconds())}` : hm;
}

/**
 * Draw `points` ([{time, value}], oldest first) between `from` and `to` (epoch
 * seconds) into `svg`: a line (gauges, rates) or bars (counts per sample of
 * `step` seconds).
 */
export function drawChart(svg, points, { from, to, step = 5, style = "line", label = "" }) {
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const shown = points.filter((p) => p.time >= from && p.time <= to);
  const top = niceMax(Math.max(0, ...shown.map((p) => p.value)));
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * innerW;
  const y = (v) => PAD.top + innerH - (v / top) * innerH;
  const parts = [];
  for (const fraction of [0, 0.5, 1]) {
    const gy = PAD.top + innerH * (1 - fraction);
    parts.push(el("line", { class: "grid-line", x1: PAD.left, x2: WIDTH - PAD.right, y1: gy, y2: gy }));
    parts.push(el("text", { class: "axis", x: PAD.left - 5, y: gy + 4, "text-anchor": "end" },
      String(Math.round(top * fraction * 100) / 100)));
  }
  for (const fraction of [0, 0.25, 0.5, 0.75, 1]) {
    const t = from + (to - from) * fraction;
    parts.push(el("text", { class: "axis", x: x(t), y: HEIGHT - 5,
      "text-anchor": fraction === 0 ? "start" : fraction === 1 ? "end" : "middle" }, clock(t, to - from < 600)));
  }
  if (style === "bars") {
    const width = Math.max(1.5, (innerW * step) / Math.max(1, to - from) * 0.8);
    for (const p of shown) {
      if (!p.value) continue;
      parts.push(el("rect", { class: "bar", x: x(p.time) - width, y: y(p.value), width,
        height: PAD.top + innerH - y(p.value) }));
    }
  } else if (shown.length) {
    const d = shown.map((p, i) => `${i ? "L" : "M"}${x(p.time).toFixed(1)},${y(p.value).toFixed(1)}`).join("");
    const last = shown[shown.length - 1];
    parts.push(el("path", { class: "area", d: `${d}L${x(last.time).toFixed(1)},${y(0)}L${x(shown[0].time).toFixed(1)},${y(0)}Z` }));
    parts.push(el("path", { class: "line", d }));
    parts.push(el("circle", { class: "dot", cx: x(last.time), cy: y(last.value), r: 3 }));
  }
  svg.replaceChildren(...parts);
  svg.dataset.points = String(shown.length);
  svg.dataset.last = shown.length ? String(shown[shown.length - 1].value) : "";
  svg.dataset.total = String(shown.reduce((sum, p) => sum + (p.value || 0), 0));
}
