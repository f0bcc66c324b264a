// The fleet dashboard: one JSON document from the agent (`/api/dashboard`, then every change on
// `/events`), drawn into the page. The charts are a small line plotter of our own on <canvas>.
"use strict";

const fixed = (v, digits) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const setting = (s) => (typeof s === "string" ? s : s && s.power_target !== undefined ? `${fixed(s.power_target, 0)} W` : JSON.stringify(s));
const time = (unix) => new Date(unix * 1000).toISOString().slice(11, 19);

// Draws `series` ([{name, color, points: [[x, y]...], step}]) on `canvas`, axes fitted to all.
function plot(canvas, title, series) {
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = { l: 48, r: 12, t: 40, b: 28 };
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#1d2330";
  g.font = "13px system-ui";
  g.fillText(title, pad.l, 16);
  const all = series.flatMap((s) => s.points).filter((p) => p[1] !== null && Number.isFinite(p[1]));
  if (all.length === 0) return;
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y1 += 1; y0 -= 1; }
  const margin = (y1 - y0) * 0.08;
  y0 -= margin; y1 += margin;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
  g.strokeStyle = "#c9ced6";
  g.beginPath(); g.moveTo(pad.l, pad.t); g.lineTo(pad.l, h - pad.b); g.lineTo(w - pad.r, h - pad.b); g.stroke();
  g.fillStyle = "#5b6372";
  g.font = "11px system-ui";
  for (const y of [y0 + margin, (y0 + y1) / 2, y1 - margin]) g.fillText(y.toFixed(1), 4, Y(y) + 4);
  g.fillText(time(x0), pad.l, h - 8);
  g.fillText(time(x1), w - pad.r - 48, h - 8);
  let legend = pad.l;
  for (const s of series) {
    g.strokeStyle = s.color;
    g.lineWidth = 2;
    g.beginPath();
    let started = false, last = null;
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y)) { started = false; continue; }
      if (!started) { g.moveTo(X(x), Y(y)); started = true; }
      else if (s.step && last !== null) { g.lineTo(X(x), Y(last)); g.lineTo(X(x), Y(y)); }
      else g.lineTo(X(x), Y(y));
      last = y;
    }
    g.stroke();
    g.fillStyle = s.color;
    g.fillText(s.name, legend, 32);
    legend += g.measureText(s.name).width + 14;
  }
  g.lineWidth = 1;
}

function render(view) {
  document.getElementById("site").textContent = view.site;
  document.getElementById("hashprice").textContent = fixed(view.hashprice, 2);
  document.getElementById("power-price").textContent = fixed(view.power_price, 3);
  document.getElementById("cap").textContent = view.cap_w === null ? "none" : fixed(view.cap_w / 1000, 1);
  const online = view.fleet.filter((r) => r.online);
  const asleep = online.filter((r) => r.mode === "sleeping").length;
  document.getElementById("counts").textContent = `${online.length - asleep} / ${asleep} / ${view.fleet.length - online.length}`;
  document.getElementById("power").textContent = fixed(online.reduce((sum, r) => sum + r.power_w, 0) / 1000, 1);
  document.getElementById("updated").textContent = time(view.at);

  const rows = view.fleet.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.miner = r.miner;
    tr.dataset.mode = r.online ? r.mode : "offline";
    tr.dataset.online = String(r.online);
    const cells = [r.miner, r.online ? r.mode : "offline", fixed(r.hashrate_ths, 2), fixed(r.power_w, 0),
      fixed(r.j_per_th, 1), fixed(r.breakeven, 2), fixed(r.margin, 2), setting(r.target), r.reason,
      r.last_seen ? time(r.last_seen) : "–"];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 8) td.className = "text";
      tr.appendChild(td);
    });
    return tr;
  });
  document.getElementById("fleet").replaceChildren(...rows);

  const pending = view.pending.map((p) => {
    const li = document.createElement("li");
    li.textContent = `${p.miner}: ${setting(p.want)} (${p.phase})`;
    return li;
  });
  if (pending.length === 0) pending.push(Object.assign(document.createElement("li"), { textContent: "none" }));
  document.getElementById("pending").replaceChildren(...pending);

  const h = view.history;
  const line = (key) => h.map((m) => [m.at, m[key]]);
  plot(document.getElementById("market"), "hashprice against the fleet's breakevens ($/PH/day)", [
    { name: "hashprice", color: "#1f6feb", points: line("hashprice") },
    { name: "p10", color: "#2da44e", points: line("breakeven_p10") },
    { name: "median", color: "#bf8700", points: line("breakeven_p50") },
    { name: "p90", color: "#cf222e", points: line("breakeven_p90") },
  ]);
  plot(document.getElementById("curtailment"), "machines curtailed", [
    { name: "asleep by plan", color: "#8250df", points: line("curtailed"), step: true },
  ]);
  document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
}

async function start() {
  const first = await fetch("/api/dashboard");
  const text = await first.text();
  if (text) render(JSON.parse(text));
  const events = new EventSource("/events");
  events.onmessage = (e) => { if (e.data) render(JSON.parse(e.data)); };
}

start();
