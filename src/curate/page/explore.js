// The explorer page's script: decodes window.PRETEXT_DATA (from data.js), draws the map on a
// canvas, answers hovers through a grid index, and fills the side panels.
//
// Everything that came from the data set (paths, class names, the title) reaches the DOM only
// through textContent or createElement: never innerHTML. Errors are not caught here: they reach
// the console (and the page's error bar) so a test or a user sees them.
"use strict";
(function () {
  const POINT_RADIUS_CSS = 1.6;      // half the side of a point's square, in CSS px
  const HOVER_RADIUS_CSS = 10;       // how far from the cursor a point still counts as hovered
  const POINTS_PER_CELL = 4;         // grid index density: about this many points per cell
  const FIT_MARGIN_CSS = 18;         // space around the map when fitted to the window
  const ZOOM_STEP = 1.0015;          // zoom factor per wheel delta unit
  const DRAG_THRESHOLD_CSS = 4;      // a press that moves less than this is a click
  const DIM_TOWARDS_BG = 0.75;       // how far unhighlighted points fade towards the background
  const BACKGROUND = [255, 255, 255];
  const SAMPLE_THUMBS = 16;          // at most this many sample thumbnails per cluster
  const LEGEND_MAX = 60;             // more legend entries than this are summarised
  const TOOLTIP_OFFSET_CSS = 14;
  // Categorical colours: Tableau 10 first (distinct for 10 classes), then ten more chosen to
  // stay apart from those on white; past 20 they cycle.
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#7f7f7f",
    "#1b3a6b", "#8c1c13", "#2ca8c2", "#a2c523", "#6a3d9a",
    "#d4a017", "#0b6e4f", "#c51b8a", "#5c4033", "#17becf",
  ];
  const ColourBy = { LABEL: "label", CLUSTER: "cluster" };

  const $ = (id) => document.getElementById(id);

  // Errors surface in the page too (they still reach the console: nothing is swallowed).
  window.addEventListener("error", (e) => showError(e.message || String(e.error)));
  window.addEventListener("unhandledrejection", (e) => showError(String(e.reason)));
  function showError(message) {
    const bar = $("error");
    bar.hidden = false;
    bar.textContent = (bar.textContent ? bar.textContent + "\n" : "") + "Error: " + message;
  }

  const raw = window.PRETEXT_DATA;
  if (!raw) throw new Error("data.js did not load: keep index.html and data.js in one folder");
  if (raw.version !== 1) throw new Error("data.js has version " + raw.version + "; this page reads version 1");

  // ---- decoding ----------------------------------------------------------------------------

  function bytesOf(b64) {
    // The native decoder where the browser has one (several times faster at 60,000 points).
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(b64);
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  if (!littleEndian) throw new Error("this page reads little-endian arrays; this machine is big-endian");
  const f32 = (b64) => new Float32Array(bytesOf(b64).buffer);
  const u32 = (b64) => new Uint32Array(bytesOf(b64).buffer);

  const tDecode0 = performance.now();
  const data = {
    title: raw.title,
    n: raw.n,
    layouts: raw.layouts.map((l) => ({ name: l.name, xy: f32(l.xy) })),
    labels: raw.labels === null ? null : u32(raw.labels),
    classNames: raw.classNames,
    clusters: u32(raw.clusters),
    summaries: raw.clusterSummaries,
    paths: raw.paths,
    k: raw.neighboursK,
    nbIndex: u32(raw.neighbourIndex),
    nbSim: f32(raw.neighbourSimilarity),
    atlas: raw.atlas,
  };
  const decodeMs = performance.now() - tDecode0;
  const n = data.n;

  // ---- state -------------------------------------------------------------------------------

  const state = {
    layout: 0,
    colourBy: data.labels ? ColourBy.LABEL : ColourBy.CLUSTER,
    highlight: null,        // { by: ColourBy, id } or null
    selected: -1,
    hovered: -1,
    view: { k: 1, ox: 0, oy: 0 },   // screen = o + layout * k, in CSS px of the map
    fitted: null,
  };
  const api = {
    ready: false,
    n: n,
    k: data.k,
    pointsDrawn: 0,
    timings: { decode: decodeMs, firstDraw: null, lastDraw: null, lastHover: null, lastHoverHandler: null },
  };
  window.pretextExplorer = api;

  const mapEl = $("map");
  const pointsCanvas = $("points");
  const overlay = $("overlay");
  const grids = [];   // per layout, built on first use

  // ---- colours -----------------------------------------------------------------------------

  function rgbOf(hex) {
    const v = parseInt(hex.slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }
  const paletteRgb = PALETTE.map(rgbOf);
  const colourHex = (id) => PALETTE[id % PALETTE.length];

  // A colour as the canvas's little-endian RGBA word, faded towards the background when dim.
  function packed(id, dim) {
    const c = paletteRgb[id % paletteRgb.length];
    const f = dim ? DIM_TOWARDS_BG : 0;
    const mix = (i) => Math.round(c[i] * (1 - f) + BACKGROUND[i] * f);
    return (255 << 24) | (mix(2) << 16) | (mix(1) << 8) | mix(0);
  }

  function categoryOf(by) {
    return by === ColourBy.LABEL ? data.labels : data.clusters;
  }
  function categoryCount(by) {
    return by === ColourBy.LABEL ? data.classNames.length : data.summaries.length;
  }
  function categoryName(by, id) {
    return by === ColourBy.LABEL ? data.classNames[id] : "cluster " + id;
  }
  function labelText(i) {
    return data.labels ? data.classNames[data.labels[i]] : "unlabelled";
  }

  // ---- layout bounds and the view ----------------------------------------------------------

  function boundsOf(xy) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < xy.length; i += 2) {
      const x = xy[i], y = xy[i + 1];
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
    return { x0, y0, x1, y1 };
  }

  function mapSize() {
    const r = mapEl.getBoundingClientRect();
    return { w: r.width, h: r.height };
  }

  // Fits the layout in the map, keeping its aspect ratio (distances mean something in UMAP/PCA).
  function fitView() {
    const b = boundsOf(data.layouts[state.layout].xy);
    const { w, h } = mapSize();
    const spanX = Math.max(b.x1 - b.x0, 1e-9), spanY = Math.max(b.y1 - b.y0, 1e-9);
    const k = Math.max(Math.min((w - 2 * FIT_MARGIN_CSS) / spanX, (h - 2 * FIT_MARGIN_CSS) / spanY), 1e-9);
    state.view = { k, ox: w / 2 - ((b.x0 + b.x1) / 2) * k, oy: h / 2 - ((b.y0 + b.y1) / 2) * k };
  }

  function toScreen(i) {
    const xy = data.layouts[state.layout].xy, v = state.view;
    return { x: v.ox + xy[2 * i] * v.k, y: v.oy + xy[2 * i + 1] * v.k };
  }

  // ---- drawing -----------------------------------------------------------------------------

  function sizeCanvas(canvas) {
    const { w, h } = mapSize();
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.max(1, Math.round(w * dpr)), ph = Math.max(1, Math.round(h * dpr));
    if (canvas.width !== pw || canvas.height !== ph) {
      canvas.width = pw;
      canvas.height = ph;
    }
    return dpr;
  }

  // Writes every point as a small square straight into the pixels: at 60,000 points this is
  // a few milliseconds, where one canvas path per point would take far longer.
  function drawPoints() {
    const t0 = performance.now();
    const dpr = sizeCanvas(pointsCanvas);
    const W = pointsCanvas.width, H = pointsCanvas.height;
    const ctx = pointsCanvas.getContext("2d");
    const img = ctx.createImageData(W, H);
    const px = new Uint32Array(img.data.buffer);
    px.fill((255 << 24) | (BACKGROUND[2] << 16) | (BACKGROUND[1] << 8) | BACKGROUND[0]);
    const cat = categoryOf(state.colourBy);
    const count = categoryCount(state.colourBy);
    const bright = new Uint32Array(count), dim = new Uint32Array(count);
    for (let c = 0; c < count; c++) { bright[c] = packed(c, false); dim[c] = packed(c, true); }
    const hl = state.highlight;
    const hlCat = hl ? categoryOf(hl.by) : null;
    const r = Math.max(1, Math.round(POINT_RADIUS_CSS * dpr));
    const xy = data.layouts[state.layout].xy, v = state.view;
    let drawn = 0;
    // Dim points first, so highlighted ones lie on top of them.
    for (let pass = 0; pass < (hl ? 2 : 1); pass++) {
      for (let i = 0; i < n; i++) {
        const isHl = hl ? hlCat[i] === hl.id : true;
        if (hl && isHl !== (pass === 1)) continue;
        const cx = Math.round((v.ox + xy[2 * i] * v.k) * dpr);
        const cy = Math.round((v.oy + xy[2 * i + 1] * v.k) * dpr);
        if (cx < -r || cy < -r || cx >= W + r || cy >= H + r) continue;
        const colour = isHl ? bright[cat[i]] : dim[cat[i]];
        const xa = Math.max(0, cx - r), xb = Math.min(W, cx + r);
        const ya = Math.max(0, cy - r), yb = Math.min(H, cy + r);
        for (let y = ya; y < yb; y++) px.fill(colour, y * W + xa, y * W + xb);
        drawn++;
      }
    }
    ctx.putImageData(img, 0, 0);
    api.pointsDrawn = drawn;
    api.timings.lastDraw = performance.now() - t0;
    drawOverlay();
  }

  function ring(ctx, i, radius, colour, width) {
    const p = toScreen(i);
    ctx.beginPath();
    ctx.arc(p.x, p.y, radius, 0, 2 * Math.PI);
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.stroke();
  }

  // The selection, its neighbours and the hovered point, on a second canvas so a hover does
  // not redraw 60,000 points.
  function drawOverlay() {
    const dpr = sizeCanvas(overlay);
    const ctx = overlay.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (state.selected >= 0) {
      const s = state.selected;
      for (let j = 0; j < data.k; j++) ring(ctx, data.nbIndex[s * data.k + j], 4, "#111", 1.2);
      ring(ctx, s, 7, "#ffffff", 4);
      ring(ctx, s, 7, "#d62728", 2.2);
    }
    if (state.hovered >= 0) ring(ctx, state.hovered, 6, "#111", 1.5);
  }

  function redraw() {
    drawPoints();
  }

  // Drags and wheels fire faster than a 60,000-point frame draws: one redraw per frame.
  let redrawPending = false;
  function scheduleRedraw() {
    if (redrawPending) return;
    redrawPending = true;
    requestAnimationFrame(() => { redrawPending = false; drawPoints(); });
  }

  // ---- the hover index ---------------------------------------------------------------------

  // A uniform grid over a layout's bounds, in layout units, built once per layout: points
  // sorted by cell (counting sort), so a hover looks at the few cells under the cursor.
  function buildGrid(layoutIndex) {
    const xy = data.layouts[layoutIndex].xy;
    const b = boundsOf(xy);
    const side = Math.max(1, Math.ceil(Math.sqrt(n / POINTS_PER_CELL)));
    const sx = side / Math.max(b.x1 - b.x0, 1e-9), sy = side / Math.max(b.y1 - b.y0, 1e-9);
    const cellOf = new Uint32Array(n);
    const start = new Uint32Array(side * side + 1);
    for (let i = 0; i < n; i++) {
      const cx = Math.min(side - 1, Math.floor((xy[2 * i] - b.x0) * sx));
      const cy = Math.min(side - 1, Math.floor((xy[2 * i + 1] - b.y0) * sy));
      cellOf[i] = cy * side + cx;
      start[cellOf[i] + 1]++;
    }
    for (let c = 0; c < side * side; c++) start[c + 1] += start[c];
    const fill = start.slice(0, side * side);
    const items = new Uint32Array(n);
    for (let i = 0; i < n; i++) items[fill[cellOf[i]]++] = i;
    return { b, side, sx, sy, start, items };
  }

  function gridOf(layoutIndex) {
    if (!grids[layoutIndex]) grids[layoutIndex] = buildGrid(layoutIndex);
    return grids[layoutIndex];
  }

  // The point nearest to map position (mx, my) in CSS px, within HOVER_RADIUS_CSS, or -1.
  function nearestAt(mx, my) {
    const g = gridOf(state.layout), v = state.view, xy = data.layouts[state.layout].xy;
    const lx = (mx - v.ox) / v.k, ly = (my - v.oy) / v.k, lr = HOVER_RADIUS_CSS / v.k;
    const clamp = (c) => Math.max(0, Math.min(g.side - 1, c));
    const cx0 = clamp(Math.floor((lx - lr - g.b.x0) * g.sx)), cx1 = clamp(Math.floor((lx + lr - g.b.x0) * g.sx));
    const cy0 = clamp(Math.floor((ly - lr - g.b.y0) * g.sy)), cy1 = clamp(Math.floor((ly + lr - g.b.y0) * g.sy));
    let best = -1, bestD = lr * lr;
    for (let cy = cy0; cy <= cy1; cy++) {
      for (let cx = cx0; cx <= cx1; cx++) {
        const c = cy * g.side + cx;
        for (let s = g.start[c]; s < g.start[c + 1]; s++) {
          const i = g.items[s];
          const dx = xy[2 * i] - lx, dy = xy[2 * i + 1] - ly;
          const d = dx * dx + dy * dy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  // ---- thumbnails --------------------------------------------------------------------------

  // Shows thumbnail i in `el` at `size` CSS px: a window onto its atlas sheet, scaled by width
  // (the last sheet may be shorter).
  function setThumb(el, i, size) {
    const a = data.atlas;
    const sheet = Math.floor(i / a.perSheet), cell = i % a.perSheet;
    const col = cell % a.columns, row = Math.floor(cell / a.columns);
    el.style.backgroundImage = 'url("' + a.files[sheet] + '")';
    el.style.backgroundSize = a.columns * size + "px auto";
    el.style.backgroundPosition = -col * size + "px " + -row * size + "px";
    el.classList.toggle("pixelated", size >= 2 * a.thumb);
  }

  function thumbDiv(i, size) {
    const el = document.createElement("div");
    el.className = "thumb";
    el.style.width = el.style.height = size + "px";
    setThumb(el, i, size);
    return el;
  }

  function textDiv(className, text) {
    const el = document.createElement("div");
    el.className = className;
    el.textContent = text;
    return el;
  }

  // What is known about point i, as one line.
  function metaText(i) {
    return labelText(i) + " · cluster " + data.clusters[i] + " · #" + i;
  }
  const pathText = (i) => data.paths[i] || "(no path)";

  // ---- hover -------------------------------------------------------------------------------

  function mapPoint(e) {
    const r = mapEl.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  function showTooltip(i, m) {
    const tip = $("tooltip");
    if (i < 0) { tip.hidden = true; return; }
    setThumb($("tooltip-thumb"), i, 80);
    $("tooltip-path").textContent = pathText(i);
    $("tooltip-meta").textContent = metaText(i);
    tip.hidden = false;
    const { w, h } = mapSize();
    const tw = tip.offsetWidth, th = tip.offsetHeight;
    let x = m.x + TOOLTIP_OFFSET_CSS, y = m.y + TOOLTIP_OFFSET_CSS;
    if (x + tw > w) x = Math.max(0, m.x - TOOLTIP_OFFSET_CSS - tw);
    if (y + th > h) y = Math.max(0, m.y - TOOLTIP_OFFSET_CSS - th);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  function onHover(e) {
    const t0 = performance.now();
    const m = mapPoint(e);
    const i = nearestAt(m.x, m.y);
    if (i !== state.hovered) {
      state.hovered = i;
      drawOverlay();
    }
    showTooltip(i, m);
    const t1 = performance.now();
    api.timings.lastHoverHandler = t1 - t0;
    // From the event's creation, so time spent waiting behind other work counts too.
    api.timings.lastHover = t1 - (e.timeStamp > 0 && e.timeStamp <= t1 ? e.timeStamp : t0);
    api.hovered = i;
    api.hovers++;
  }

  // ---- selection and neighbours ------------------------------------------------------------

  function select(i) {
    if (!(Number.isInteger(i) && i >= -1 && i < n)) throw new Error("select: no point " + i + " (there are " + n + ")");
    state.selected = i;
    api.selected = i;
    $("selection-hint").hidden = i >= 0;
    $("selected").hidden = i < 0;
    const grid = $("neighbours");
    grid.replaceChildren();
    const heading = $("neighbours-heading");
    heading.hidden = i < 0;
    drawOverlay();
    if (i < 0) return;
    setThumb($("selected-thumb"), i, 96);
    $("selected-path").textContent = pathText(i);
    $("selected-meta").textContent = metaText(i);
    heading.textContent = data.k + " nearest neighbours (cosine similarity)";
    for (let j = 0; j < data.k; j++) grid.appendChild(neighbourItem(data.nbIndex[i * data.k + j], data.nbSim[i * data.k + j]));
  }

  function neighbourItem(nb, sim) {
    const item = document.createElement("button");
    item.type = "button";
    item.className = "nb";
    item.dataset.index = String(nb);
    item.title = pathText(nb);
    item.appendChild(thumbDiv(nb, 72));
    item.appendChild(textDiv("sim", sim.toFixed(3)));
    item.appendChild(textDiv("label", labelText(nb)));
    item.addEventListener("click", () => select(nb));
    return item;
  }

  // ---- highlight, legend and clusters ------------------------------------------------------

  function setHighlight(by, id) {
    const same = state.highlight && state.highlight.by === by && state.highlight.id === id;
    state.highlight = same || id === null ? null : { by, id };
    api.highlight = state.highlight;
    for (const el of document.querySelectorAll(".legend-item, .cluster")) {
      const h = state.highlight;
      el.classList.toggle("active", !!h && el.dataset.by === h.by && Number(el.dataset.id) === h.id);
    }
    redraw();
  }

  function countsOf(by) {
    const counts = new Uint32Array(categoryCount(by)), cat = categoryOf(by);
    for (let i = 0; i < n; i++) counts[cat[i]]++;
    return counts;
  }

  function buildLegend() {
    const legend = $("legend"), by = state.colourBy;
    legend.replaceChildren();
    const counts = countsOf(by);
    const shown = Math.min(counts.length, LEGEND_MAX);
    for (let c = 0; c < shown; c++) {
      const item = document.createElement("button");
      item.type = "button";
      item.className = "legend-item";
      item.dataset.by = by;
      item.dataset.id = String(c);
      item.title = categoryName(by, c) + ": click to highlight";
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = colourHex(c);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = categoryName(by, c);
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = counts[c].toLocaleString("en");
      item.append(sw, name, count);
      item.addEventListener("click", () => setHighlight(by, c));
      legend.appendChild(item);
    }
    if (counts.length > shown) legend.appendChild(textDiv("legend-more", "… and " + (counts.length - shown) + " more"));
  }

  function clusterInfo(s) {
    let text = s.size.toLocaleString("en") + " images";
    // The share first, so a long class name that is cut short keeps its number.
    if (s.majority) text += " · " + Math.round(s.majority[1] * 100) + "% " + data.classNames[s.majority[0]];
    return text;
  }

  function clusterCard(c) {
    const s = data.summaries[c];
    const card = document.createElement("div");
    card.className = "cluster";
    card.dataset.by = ColourBy.CLUSTER;
    card.dataset.id = String(c);
    const head = document.createElement("div");
    head.className = "cluster-head";
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = colourHex(c);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = "Cluster " + c;
    const info = document.createElement("span");
    info.className = "info";
    info.textContent = clusterInfo(s);
    info.title = info.textContent;
    head.append(sw, name, info);
    const samples = document.createElement("div");
    samples.className = "samples";
    for (const i of s.sample.slice(0, SAMPLE_THUMBS)) {
      const t = thumbDiv(i, 38);
      t.title = pathText(i);
      t.addEventListener("click", (e) => { e.stopPropagation(); select(i); });
      samples.appendChild(t);
    }
    card.append(head, samples);
    card.addEventListener("click", () => setHighlight(ColourBy.CLUSTER, c));
    return card;
  }

  function buildClusters() {
    $("clusters-heading").textContent = "Clusters (" + data.summaries.length + ")";
    const list = $("clusters");
    list.replaceChildren(...data.summaries.map((_, c) => clusterCard(c)));
  }

  // ---- controls ----------------------------------------------------------------------------

  function option(value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }

  function buildControls() {
    const layoutSel = $("layout-select");
    data.layouts.forEach((l, j) => layoutSel.appendChild(option(String(j), l.name)));
    layoutSel.addEventListener("change", () => setLayout(Number(layoutSel.value)));
    const colourSel = $("colour-select");
    if (data.labels) colourSel.appendChild(option(ColourBy.LABEL, "label"));
    colourSel.appendChild(option(ColourBy.CLUSTER, "k-means cluster"));
    colourSel.value = state.colourBy;
    colourSel.addEventListener("change", () => setColourBy(colourSel.value));
    $("reset-view").addEventListener("click", () => { fitView(); redraw(); });
    $("status").textContent = n.toLocaleString("en") + " images";
  }

  function setLayout(j) {
    state.layout = j;
    $("layout-select").value = String(j);
    state.hovered = -1;
    fitView();
    redraw();
  }

  function setColourBy(by) {
    if (by === ColourBy.LABEL && !data.labels) throw new Error("this data set has no labels to colour by");
    state.colourBy = by;
    $("colour-select").value = by;
    buildLegend();
    setHighlight(by, null);
  }

  // ---- pan and zoom ------------------------------------------------------------------------

  function installMouse() {
    let press = null;
    mapEl.addEventListener("mousedown", (e) => {
      if (e.button !== 0) return;
      press = { x: e.clientX, y: e.clientY, ox: state.view.ox, oy: state.view.oy, moved: false };
    });
    window.addEventListener("mousemove", (e) => {
      if (!press) return;
      const dx = e.clientX - press.x, dy = e.clientY - press.y;
      if (!press.moved && Math.hypot(dx, dy) < DRAG_THRESHOLD_CSS) return;
      press.moved = true;
      mapEl.classList.add("dragging");
      state.view.ox = press.ox + dx;
      state.view.oy = press.oy + dy;
      scheduleRedraw();
    });
    window.addEventListener("mouseup", (e) => {
      if (!press) return;
      const wasClick = !press.moved;
      press = null;
      mapEl.classList.remove("dragging");
      if (wasClick && mapEl.contains(e.target)) {
        const m = mapPoint(e);
        const i = nearestAt(m.x, m.y);
        if (i >= 0) select(i);
      }
    });
    mapEl.addEventListener("mousemove", (e) => { if (!press || !press.moved) onHover(e); });
    mapEl.addEventListener("mouseleave", () => { state.hovered = -1; api.hovered = -1; $("tooltip").hidden = true; drawOverlay(); });
    mapEl.addEventListener("wheel", (e) => {
      e.preventDefault();
      const m = mapPoint(e), f = Math.pow(ZOOM_STEP, -e.deltaY), v = state.view;
      v.ox = m.x - (m.x - v.ox) * f;
      v.oy = m.y - (m.y - v.oy) * f;
      v.k *= f;
      scheduleRedraw();
    }, { passive: false });
    window.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { select(-1); setHighlight(state.colourBy, null); }
    });
  }

  // ---- start -------------------------------------------------------------------------------

  function screenPosition(i) {
    if (!(i >= 0 && i < n)) throw new Error("screenPosition: no point " + i + " (there are " + n + ")");
    const r = mapEl.getBoundingClientRect(), p = toScreen(i);
    return { x: r.left + window.scrollX + p.x, y: r.top + window.scrollY + p.y };
  }

  function start() {
    document.title = "pretext explore: " + data.title;
    $("title").textContent = data.title;
    $("title").title = data.title;
    buildControls();
    buildLegend();
    buildClusters();
    installMouse();
    fitView();
    drawPoints();
    api.timings.firstDraw = performance.now();
    gridOf(state.layout);
    api.timings.gridBuilt = performance.now();
    window.addEventListener("resize", () => { fitView(); redraw(); });
    Object.assign(api, {
      screenPosition, select, setLayout, setColourBy, nearestAt,
      highlightCluster: (c) => setHighlight(ColourBy.CLUSTER, c),
      clusterSample: (c) => (data.summaries[c] && data.summaries[c].sample.length ? data.summaries[c].sample[0] : 0),
      layouts: data.layouts.map((l) => l.name),
      hovered: -1, hovers: 0, selected: -1, highlight: null,
    });
    api.ready = true;
  }

  start();
})();
