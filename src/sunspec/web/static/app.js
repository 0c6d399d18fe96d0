// sunspec live view: a waterfall (UTC time across, frequency up), the latest spectrum, the
// receiver's status and the burst detector's events. Rows arrive over a WebSocket in the
// compact binary form described in sunspec/web/codec.py: the whole ring once on connect, then
// each new row as it comes. Channels are drawn by index, so a non-uniform frequency axis (any
// spectrometer's) keeps every channel; ticks and the read-out interpolate the real frequencies.
"use strict";

const AUTO_PERCENTILES = [1, 99.5];  // robust automatic levels
const AUTO_EVERY_MS = 1000;
const STATUS_EVERY_MS = 1000;
// the badge says "stalled" when no row arrived for this many frame periods (at least STALL_MIN_MS)
const STALL_PERIODS = 4, STALL_MIN_MS = 2000, BADGE_EVERY_MS = 250;
const HEALTH_RANK = { ok: 0, degraded: 1, failed: 2 };
const FONT = "12px system-ui, sans-serif";
const AXIS = "#8a94a0", GRID = "rgba(138,148,160,0.25)", TRACE = "#f2b134", EMPTY = [17, 20, 24];
// missing channels (declared so by the sender, or masked by the detector): a grey hatch, in
// no colour map
const GAP_A = [92, 92, 92], GAP_B = [128, 128, 128];
const EVENT_COLOURS = { III: "#ff5ca8", II: "#5cd6ff" }, EVENT_OTHER = "#ffffff";
const EVENT_ROWS = 30;  // events listed

const $ = (id) => document.getElementById(id);
const state = {
  nrows: 0, nfreq: 0, freqs: null, stream: {},
  lin: null, db: null, ex: null, times: null,  // per column: values (nrows * nfreq), window ends
  unit: "linear", dbPerDigit: 1, desc: false, bg: null, excess: false,
  events: new Map(), streamName: null, streams: [],
  last: -1, count: 0,                 // newest absolute index (mod 2**32), rows held
  cmap: "viridis", scale: "db", auto: true, lo: 0, hi: 1,
  paused: false, pending: [], viewer: null, hover: null,
  off: null, offCtx: null, column: null, dirty: true, lastAuto: -Infinity,
  connected: false, lastRowAt: 0, period: NaN, serverState: null,
};

// ---- the store: one column per ring row, placed by index so gaps stay visible ----
function reset(meta) {
  state.nrows = meta.nrows; state.nfreq = meta.nfreq;
  state.freqs = meta.freqs_mhz; state.stream = meta.stream || {};
  const f = state.freqs;
  state.desc = !!(f && f.length > 1 && f[f.length - 1] < f[0]);  // highest channel first
  state.unit = state.stream.unit || "linear";
  state.dbPerDigit = state.stream.db_per_digit || 1;
  const size = state.nrows * state.nfreq;
  state.lin = new Float32Array(size).fill(NaN);
  state.db = new Float32Array(size).fill(NaN);
  state.ex = new Float32Array(size).fill(NaN);
  state.bg = null;
  $("excess").disabled = !meta.background;
  if (!meta.background) { state.excess = false; $("excess").checked = false; }
  setScaleOptions();
  state.times = new Float64Array(state.nrows).fill(NaN);
  state.last = -1; state.count = 0; state.pending = [];
  state.off = size > 0 ? new OffscreenCanvas(state.nrows, state.nfreq) : null;
  state.offCtx = state.off && state.off.getContext("2d");
  state.column = state.offCtx && state.offCtx.createImageData(1, state.nfreq);
  const s = state.stream;
  // the header's beam number (the recorder's) and the receiver's index within the frame
  // are different things: the index is shown only when the frame holds several beams
  $("title").textContent = [s.name && s.name !== "stream" ? s.name : null,
    s.instrument || null, s.station && s.station !== s.name ? s.station : null,
    s.beam != null ? `beam ${s.beam}` : null,
    s.nbeam > 1 ? `beam index ${s.beam_index}` : null,
    s.product != null ? `product ${s.product}` : null,
    s.factor > 1 ? `${s.factor} channels averaged` : null].filter(Boolean).join(" · ") || "live";
  $("replay").textContent = s.replay ? `replay of ${s.source || "a file"}` : "";
  state.lastAuto = -Infinity; state.period = NaN; state.dirty = true;
}

// the Scale choices of this stream's unit: dB always; the values as sent when they differ
function setScaleOptions() {
  const sel = $("scale"), raw = { linear: "linear", digits: "digits" }[state.unit];
  sel.innerHTML = "";
  sel.add(new Option(dbLabel(), "db"));
  if (raw) sel.add(new Option(raw, "lin"));
  if (!raw) state.scale = "db";
  sel.value = state.scale;
}

function dbLabel() {
  return state.unit === "digits" ? `dB (instrument digits x ${+state.dbPerDigit.toPrecision(4)})` : "dB";
}

function ingest(buf) {
  const dv = new DataView(buf);
  if (dv.getUint32(0, true) !== 0x31525353) throw new Error("not a sunspec rows message");
  const n = dv.getUint32(4, true), nfreq = dv.getUint32(8, true);
  if (nfreq !== state.nfreq) return;  // rows of a geometry already replaced
  const size = 24 + nfreq;
  for (let r = 0, o = 12; r < n; r++, o += size) {
    const t = dv.getFloat64(o, true), idx = dv.getUint32(o + 8, true);
    const mode = dv.getUint8(o + 12), off = dv.getFloat32(o + 16, true);
    const scale = dv.getFloat32(o + 20, true);
    if (state.last >= 0) {
      const ahead = (idx - state.last) >>> 0;
      if (ahead === 0 || ahead > 0x80000000) continue;  // already have it
      for (let k = 1; k < Math.min(ahead, state.nrows + 1); k++) clearColumn((state.last + k) % state.nrows);
      const dt = t - state.times[state.last % state.nrows];
      if (ahead === 1 && dt > 0) state.period = dt;  // seconds of data per row
    }
    const col = idx % state.nrows, q = new Uint8Array(buf, o + 24, nfreq);
    const base = col * nfreq, lin = state.lin, db = state.db, log = mode & 1, gaps = mode & 2;
    const unit = state.unit, k = state.dbPerDigit;
    for (let c = 0; c < nfreq; c++) {
      if (gaps && q[c] === 255) { lin[base + c] = NaN; db[base + c] = NaN; continue; }
      const x = off + scale * q[c];
      const v = log ? Math.pow(10, x) : x;
      lin[base + c] = v;
      // dB as sent, instrument digits x their dB step, linear power 10 log10
      db[base + c] = unit === "dB" ? v : unit === "digits" ? v * k
        : log ? 10 * x : (v > 0 ? 10 * Math.log10(v) : NaN);
    }
    excessColumn(col);
    state.times[col] = t; state.last = idx;
    state.count = Math.min(state.count + 1, state.nrows);
    paintColumn(col);
  }
  if (n > 0) state.lastRowAt = performance.now();
  state.dirty = true;
}

function clearColumn(col) {
  state.lin.fill(NaN, col * state.nfreq, (col + 1) * state.nfreq);
  state.db.fill(NaN, col * state.nfreq, (col + 1) * state.nfreq);
  state.ex.fill(NaN, col * state.nfreq, (col + 1) * state.nfreq);
  state.times[col] = NaN;
  paintColumn(col);
}

// the background-subtracted view: dB above the detector's running background per channel
function excessColumn(col) {
  const nf = state.nfreq, base = col * nf, bg = state.bg, db = state.db, ex = state.ex;
  for (let c = 0; c < nf; c++) ex[base + c] = bg ? db[base + c] - (bg[c] == null ? NaN : bg[c]) : NaN;
}

function setBackground(level) {
  if (!level || level.length !== state.nfreq) return;
  state.bg = level;
  for (let col = 0; col < state.nrows; col++) excessColumn(col);
  if (state.excess) { if (state.auto) { state.lo = state.hi = 0; autoLevels(); } else repaintAll(); }
}

// ---- colour ----
function values() { return state.excess ? state.ex : state.scale === "db" ? state.db : state.lin; }

function colourInto(px, p, v, lut, lo, k, gap) {
  if (!(v === v)) {
    const g = gap === 0 ? EMPTY : gap === 1 ? GAP_A : GAP_B;
    px[p] = g[0]; px[p + 1] = g[1]; px[p + 2] = g[2]; px[p + 3] = 255; return;
  }
  let i = ((v - lo) * k) | 0;
  i = i < 0 ? 0 : i > 255 ? 255 : i;
  px[p] = lut[3 * i]; px[p + 1] = lut[3 * i + 1]; px[p + 2] = lut[3 * i + 2]; px[p + 3] = 255;
}

function paintColumn(col) {
  if (!state.offCtx) return;
  const px = state.column.data, vals = values(), lut = COLORMAPS[state.cmap];
  const nf = state.nfreq, base = col * nf, lo = state.lo, k = 256 / (state.hi - state.lo || 1);
  const held = state.times[col] === state.times[col];
  for (let c = 0; c < nf; c++) {
    colourInto(px, 4 * pixelRow(c), vals[base + c], lut, lo, k, held ? 1 + (((col + c) >> 1) & 1) : 0);
  }
  state.offCtx.putImageData(state.column, col, 0);
}

function repaintAll() {
  if (!state.offCtx) return;
  const img = state.offCtx.createImageData(state.nrows, state.nfreq), px = img.data;
  const vals = values(), lut = COLORMAPS[state.cmap], nf = state.nfreq, nr = state.nrows;
  const lo = state.lo, k = 256 / (state.hi - state.lo || 1);
  for (let col = 0; col < nr; col++) {
    const held = state.times[col] === state.times[col];
    for (let c = 0; c < nf; c++) {
      colourInto(px, 4 * (pixelRow(c) * nr + col), vals[col * nf + c], lut, lo, k, held ? 1 + (((col + c) >> 1) & 1) : 0);
    }
  }
  state.offCtx.putImageData(img, 0, 0);
  state.dirty = true;
}

function setLevels(lo, hi) {
  if (!(hi > lo)) hi = lo + 1;
  state.lo = lo; state.hi = hi;
  $("lo").value = +lo.toPrecision(4); $("hi").value = +hi.toPrecision(4);
  repaintAll();
}

function autoLevels() {
  const vals = values(), sample = [];
  const stride = Math.max(1, Math.floor(vals.length / 50000));
  for (let i = 0; i < vals.length; i += stride) if (vals[i] === vals[i]) sample.push(vals[i]);
  if (sample.length < 2) return;
  sample.sort((a, b) => a - b);
  const pick = (p) => sample[Math.min(sample.length - 1, Math.floor(p / 100 * sample.length))];
  const lo = pick(AUTO_PERCENTILES[0]), hi = pick(AUTO_PERCENTILES[1]);
  const span = state.hi - state.lo;
  if (Math.abs(lo - state.lo) > 0.02 * span || Math.abs(hi - state.hi) > 0.02 * span) setLevels(lo, hi);
}

// ---- axes: channels drawn by index, lowest frequency at the bottom (or left) ----
function pixelRow(c) { return state.desc ? c : state.nfreq - 1 - c; }  // offscreen row, top = 0

function chFrac(ch) {  // fraction of the axis (0 = bottom or left) at the centre of channel ch
  const f = (ch + 0.5) / state.nfreq;
  return state.desc ? 1 - f : f;
}

function chAt(frac) {  // the channel under a fraction of the axis
  const c = Math.floor((state.desc ? 1 - frac : frac) * state.nfreq);
  return Math.max(0, Math.min(state.nfreq - 1, c));
}

function freqAt(ch) {  // MHz (or channel index when unknown) at fractional channel ch
  const f = state.freqs;
  if (!f) return ch;
  if (f.length < 2) return f[0];
  const i = Math.max(0, Math.min(f.length - 2, Math.floor(ch)));
  return f[i] + (f[i + 1] - f[i]) * (ch - i);
}

function chOfFreq(mhz) {  // fractional channel at a frequency (the channels' centres interpolated)
  const f = state.freqs, n = f.length, s = state.desc ? -1 : 1;
  if (n < 2) return 0;
  let a = 0, b = n - 1;
  if (s * (mhz - f[0]) <= 0) return 0;
  if (s * (mhz - f[b]) >= 0) return b;
  while (b - a > 1) { const m = (a + b) >> 1; if (s * (f[m] - mhz) <= 0) a = m; else b = m; }
  return a + (mhz - f[a]) / (f[b] - f[a]);
}

function niceStep(span, target) {
  const raw = span / target, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

const TIME_STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600];

function utc(t, withDate) {
  const s = new Date(t * 1000).toISOString();
  return withDate ? s.slice(0, 10) + " " + s.slice(11, 19) : s.slice(11, 19);
}

function setupCanvas(cv) {
  const dpr = window.devicePixelRatio || 1, w = cv.clientWidth, h = cv.clientHeight;
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
    cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
  }
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = FONT; ctx.fillStyle = AXIS; ctx.strokeStyle = AXIS;
  return { ctx, w, h };
}

function freqTickList(length, vertical) {
  // [{label, frac}] of nice frequencies along an axis of ``length`` px; frac 0 = bottom/left
  const nf = state.nfreq, ends = [freqAt(0), freqAt(nf - 1)], out = [];
  const lo = Math.min(...ends), hi = Math.max(...ends);
  const step = niceStep(Math.abs(hi - lo) || 1, Math.max(2, Math.floor(length / (vertical ? 45 : 90))));
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step; k++) {
    const f = k * step, ch = state.freqs ? chOfFreq(f) : f;
    out.push({ label: state.freqs ? +f.toFixed(3) + "" : String(Math.round(f)), frac: chFrac(ch) });
  }
  return out;
}

function freqTicks(ctx, x0, y0, plotH, vertical, length) {
  // frequency axis along the waterfall's height (vertical) or the spectrum's width
  for (const { label, frac } of freqTickList(length, vertical)) {
    if (vertical) {
      const y = y0 + plotH * (1 - frac);
      ctx.fillRect(x0 - 5, y, 5, 1);
      ctx.textAlign = "right"; ctx.textBaseline = "middle"; ctx.fillText(label, x0 - 8, y);
    } else {
      const x = x0 + length * frac;
      ctx.fillRect(x, y0, 1, 5);
      ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.fillText(label, x, y0 + 7);
    }
  }
}

// ---- drawing ----
const WF = { left: 64, right: 84, top: 10, bottom: 40 };

function drawWaterfall() {
  const { ctx, w, h } = setupCanvas($("waterfall"));
  const pw = w - WF.left - WF.right, ph = h - WF.top - WF.bottom;
  if (!state.off || pw < 10 || ph < 10) {
    ctx.textAlign = "center"; ctx.fillText("waiting for data…", w / 2, h / 2);
    return;
  }
  const nr = state.nrows, head = (state.last + 1) % nr;  // oldest column: left edge
  ctx.fillStyle = `rgb(${EMPTY})`; ctx.fillRect(WF.left, WF.top, pw, ph);
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
  const wOld = (nr - head) / nr * pw;
  if (nr - head > 0) ctx.drawImage(state.off, head, 0, nr - head, state.nfreq, WF.left, WF.top, wOld, ph);
  if (head > 0) ctx.drawImage(state.off, 0, 0, head, state.nfreq, WF.left + wOld, WF.top, pw - wOld, ph);
  ctx.fillStyle = AXIS; ctx.strokeRect(WF.left - 0.5, WF.top - 0.5, pw + 1, ph + 1);
  freqTicks(ctx, WF.left, WF.top, ph, true, ph);
  // UTC ticks where the column times cross a multiple of a nice step
  const colTime = (i) => state.times[(head + i) % nr];
  let first = NaN, lastT = NaN;
  for (let i = 0; i < nr; i++) { const t = colTime(i); if (t === t) { if (!(first === first)) first = t; lastT = t; } }
  if (first === first) {
    const span = Math.max(lastT - first, 1e-3) * nr / Math.max(state.count, 1);
    const step = TIME_STEPS.find((s) => s >= span / Math.max(2, pw / 110)) || 86400;
    let prev = NaN;
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (let i = 0; i < nr; i++) {
      const t = colTime(i);
      if (!(t === t)) continue;
      const bin = Math.floor(t / step);
      if (prev === prev && bin !== prev) {
        const x = WF.left + (i + 0.5) / nr * pw;
        ctx.fillRect(x, WF.top + ph, 1, 5);
        ctx.fillText(utc(bin * step, false), x, WF.top + ph + 7);
      }
      prev = bin;
    }
    ctx.textAlign = "left";
    ctx.fillText(`UTC  ${utc(lastT, true).slice(0, 10)}`, WF.left, WF.top + ph + 24);
  }
  ctx.save(); ctx.translate(14, WF.top + ph / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.textBaseline = "middle";
  ctx.fillText(freqLabel(), 0, 0); ctx.restore();
  drawColourbar(ctx, w - WF.right + 14, WF.top, 14, ph);
  drawEvents(ctx, pw, ph);
  if (state.hover) {
    ctx.strokeStyle = "rgba(255,255,255,0.5)";
    ctx.strokeRect(state.hover.x - 0.5, WF.top, 1, ph);
  }
}

function drawColourbar(ctx, x, y, bw, bh) {
  const lut = COLORMAPS[state.cmap];
  for (let i = 0; i < bh; i++) {
    const j = Math.min(255, Math.floor((1 - i / bh) * 256));
    ctx.fillStyle = `rgb(${lut[3 * j]},${lut[3 * j + 1]},${lut[3 * j + 2]})`;
    ctx.fillRect(x, y + i, bw, 1);
  }
  ctx.fillStyle = AXIS; ctx.strokeStyle = AXIS; ctx.strokeRect(x - 0.5, y - 0.5, bw + 1, bh + 1);
  const step = niceStep(state.hi - state.lo, Math.max(2, Math.floor(bh / 40)));
  ctx.textAlign = "left"; ctx.textBaseline = "middle";
  for (let v = Math.ceil(state.lo / step) * step; v <= state.hi; v += step) {
    const yy = y + bh * (1 - (v - state.lo) / (state.hi - state.lo));
    ctx.fillRect(x + bw, yy, 4, 1); ctx.fillText(fmt(v), x + bw + 6, yy);
  }
  // the key of missing channels: the grey hatch
  for (let i = 0; i < 10; i++) for (let j = 0; j < bw; j++) {
    const g = ((i + j) >> 1) & 1 ? GAP_B : GAP_A;
    ctx.fillStyle = `rgb(${g})`; ctx.fillRect(x + j, y + bh + 8 + i, 1, 1);
  }
  ctx.fillStyle = AXIS; ctx.textBaseline = "top"; ctx.fillText("missing", x - 2, y + bh + 20);
  ctx.save(); ctx.translate(x + bw + 50, y + bh / 2); ctx.rotate(Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText(valueLabel(), 0, 0);
  ctx.restore();
}

function valueLabel() {
  if (state.excess) return "dB above background";
  if (state.scale === "db") return dbLabel();
  return state.unit === "digits" ? "instrument digits" : "power (linear)";
}

// ---- burst events: a box over start..end and f_low..f_high, the type and snr above ----
function eventTime(iso) { return Date.parse(iso) / 1000; }

function columnsByTime() {  // [ [i (from the left), time] ] of the columns that hold a row
  const nr = state.nrows, head = (state.last + 1) % nr, out = [];
  for (let i = 0; i < nr; i++) { const t = state.times[(head + i) % nr]; if (t === t) out.push([i, t]); }
  return out;
}

function firstAtOrAfter(cols, t) {  // index in cols of the first column ending at or after t
  let a = 0, b = cols.length;
  while (a < b) { const m = (a + b) >> 1; if (cols[m][1] < t) a = m + 1; else b = m; }
  return a;
}

function eventBox(ev, cols, pw, ph) {
  // columns are window ends: the box spans the columns whose windows overlap start..end
  if (!cols.length) return null;
  const t0 = eventTime(ev.start_utc), t1 = eventTime(ev.end_utc);
  if (!(t1 >= cols[0][1] - (state.period || 0)) || t0 > cols[cols.length - 1][1]) return null;
  const a = firstAtOrAfter(cols, t0), b = Math.min(firstAtOrAfter(cols, t1), cols.length - 1);
  const nr = state.nrows, x0 = WF.left + cols[Math.min(a, cols.length - 1)][0] / nr * pw;
  const x1 = WF.left + (cols[b][0] + 1) / nr * pw;
  let c0 = ev.chan_low, c1 = ev.chan_high;
  if (c0 == null || c1 == null) {
    if (ev.f_low_mhz == null || !state.freqs) { c0 = 0; c1 = state.nfreq - 1; }
    else { c0 = chOfFreq(ev.f_low_mhz); c1 = chOfFreq(ev.f_high_mhz); }
  }
  const half = 0.5 / state.nfreq;
  const fa = chFrac(c0), fb = chFrac(c1);
  const top = WF.top + ph * (1 - Math.max(fa, fb) - half), bottom = WF.top + ph * (1 - Math.min(fa, fb) + half);
  return { x0, x1: Math.max(x1, x0 + 2), top, bottom };
}

function drawEvents(ctx, pw, ph) {
  if (!state.events.size || !state.off) return;
  const cols = columnsByTime();
  ctx.save();
  ctx.beginPath(); ctx.rect(WF.left, WF.top, pw, ph); ctx.clip();
  ctx.lineWidth = 1.5; ctx.font = FONT; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
  for (const ev of state.events.values()) {
    const box = eventBox(ev, cols, pw, ph);
    if (!box) continue;
    const colour = EVENT_COLOURS[ev.type] || EVENT_OTHER;
    ctx.strokeStyle = colour; ctx.setLineDash(ev.final ? [] : [5, 3]);
    ctx.strokeRect(box.x0, box.top, box.x1 - box.x0, box.bottom - box.top);
    const label = `${ev.type} snr ${fmt(ev.snr)}`, tw = ctx.measureText(label).width;
    // above the box, else below it, else inside its top edge
    const ty = box.top - 2 >= WF.top + 14 ? box.top - 2 : box.bottom + 15 <= WF.top + ph ? box.bottom + 15 : box.top + 16;
    const lx = Math.max(WF.left, Math.min(box.x0, WF.left + pw - tw - 6));  // inside the plot
    ctx.fillStyle = "rgba(17,20,24,0.75)"; ctx.fillRect(lx, ty - 13, tw + 6, 14);
    ctx.fillStyle = colour; ctx.fillText(label, lx + 3, ty);
  }
  ctx.restore();
}

function setEvents(list) {
  for (const ev of list) {  // a revision replaces the marker of its id
    const old = state.events.get(ev.id);
    if (!old || (ev.revision ?? 0) >= (old.revision ?? 0)) state.events.set(ev.id, ev);
  }
  const keep = [...state.events.values()].sort((a, b) => eventTime(a.start_utc) - eventTime(b.start_utc));
  state.events = new Map(keep.slice(-200).map((e) => [e.id, e]));
  renderEventList();
  state.dirty = true;
}

function renderEventList() {
  const body = $("events-body");
  const rows = [...state.events.values()].sort((a, b) => eventTime(b.start_utc) - eventTime(a.start_utc));
  body.innerHTML = "";
  $("events-none").hidden = rows.length > 0;
  for (const ev of rows.slice(0, EVENT_ROWS)) {
    const tr = document.createElement("tr");
    tr.className = "event"; tr.dataset.id = ev.id; tr.title = `${ev.id} revision ${ev.revision}${ev.final ? " (final)" : ""}`;
    const band = ev.f_low_mhz != null ? `${ev.f_low_mhz.toFixed(1)}–${ev.f_high_mhz.toFixed(1)}` : "–";
    for (const [text, cls] of [[ev.start_utc.slice(11, 19), ""], [ev.type, "type"], [band, ""], [fmt(ev.snr), ""]]) {
      const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls;
      if (cls === "type") td.style.color = EVENT_COLOURS[ev.type] || EVENT_OTHER;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function freqLabel() {
  const s = state.stream, uneven = s.axis === "explicit" ? ", uneven channels" : "";
  return state.freqs ? `Frequency (MHz${uneven})` : "Channel";
}

function fmt(v) {
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e5 || a < 1e-2) ? v.toExponential(1) : +v.toPrecision(4) + "";
}

const SP = { left: 64, right: 84, top: 24, bottom: 34 };

function drawSpectrum() {
  const { ctx, w, h } = setupCanvas($("spectrum"));
  const pw = w - SP.left - SP.right, ph = h - SP.top - SP.bottom;
  if (state.last < 0 || pw < 10 || ph < 10) return;
  const hovered = state.hover && state.times[state.hover.col] === state.times[state.hover.col];
  const col = hovered ? state.hover.col : state.last % state.nrows;
  const vals = values(), nf = state.nfreq, base = col * nf;
  let lo = Infinity, hi = -Infinity;
  for (let c = 0; c < nf; c++) { const v = vals[base + c]; if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!(hi >= lo)) return;
  lo = Math.min(lo, state.lo); hi = Math.max(hi, state.hi);
  const pad = (hi - lo) * 0.05 || 1; lo -= pad; hi += pad;
  const yOf = (v) => SP.top + ph * (1 - (v - lo) / (hi - lo));
  ctx.strokeRect(SP.left - 0.5, SP.top - 0.5, pw + 1, ph + 1);
  const step = niceStep(hi - lo, Math.max(2, Math.floor(ph / 35)));
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    const y = yOf(v);
    ctx.fillStyle = GRID; ctx.fillRect(SP.left, y, pw, 1);
    ctx.fillStyle = AXIS; ctx.fillRect(SP.left - 5, y, 5, 1); ctx.fillText(fmt(v), SP.left - 8, y);
  }
  freqTicks(ctx, SP.left, SP.top + ph, ph, false, pw);
  ctx.setLineDash([4, 4]); ctx.strokeStyle = "rgba(138,148,160,0.7)";
  for (const v of [state.lo, state.hi]) { ctx.beginPath(); ctx.moveTo(SP.left, yOf(v)); ctx.lineTo(SP.left + pw, yOf(v)); ctx.stroke(); }
  ctx.setLineDash([]);
  ctx.strokeStyle = TRACE; ctx.lineWidth = 1.2; ctx.beginPath();
  let pen = false;
  for (let c = 0; c < nf; c++) {
    const v = vals[base + c];
    if (!(v === v)) { pen = false; continue; }
    const x = SP.left + chFrac(c) * pw, y = yOf(v);
    if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    pen = true;
  }
  ctx.stroke();
  const t = state.times[col];
  ctx.fillStyle = AXIS; ctx.textAlign = "right"; ctx.textBaseline = "top";
  ctx.fillText((hovered ? "spectrum at " : "latest spectrum ") + (t === t ? utc(t, true) + " UTC" : ""), SP.left + pw, 5);
  ctx.textAlign = "center";
  ctx.fillText(freqLabel(), SP.left + pw / 2, SP.top + ph + 20);
  ctx.save(); ctx.translate(14, SP.top + ph / 2); ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle"; ctx.fillText(valueLabel(), 0, 0);
  ctx.restore();
}

function frame() {
  if (state.dirty && !document.hidden) {
    state.dirty = false;
    drawWaterfall(); drawSpectrum();
  }
  requestAnimationFrame(frame);
}

// ---- hover readout ----
function onHover(ev) {
  const cv = $("waterfall"), r = cv.getBoundingClientRect();
  const pw = r.width - WF.left - WF.right, ph = r.height - WF.top - WF.bottom;
  const x = ev.clientX - r.left, y = ev.clientY - r.top;
  if (!state.nrows || x < WF.left || x >= WF.left + pw || y < WF.top || y >= WF.top + ph) {
    if (state.hover) { state.hover = null; state.dirty = true; $("readout").innerHTML = "&nbsp;"; }
    return;
  }
  const head = (state.last + 1) % state.nrows;
  const col = (head + Math.floor((x - WF.left) / pw * state.nrows)) % state.nrows;
  const ch = chAt(1 - (y - WF.top) / ph);
  state.hover = { x, col }; state.dirty = true;
  const t = state.times[col], v = values()[col * state.nfreq + ch];
  const unit = state.excess ? " dB above background" : state.scale === "db" ? " dB" : state.unit === "digits" ? " digits" : "";
  // the channel's own frequency, as the stream gives it
  $("readout").textContent = t === t
    ? `${utc(t, true)} UTC   ${state.freqs ? state.freqs[ch].toFixed(3) + " MHz" : "channel " + ch}   ` +
      `${v === v ? fmt(v) + unit : "missing"}`
    : "no data here";
}

// ---- status ----
function setCell(id, text, cls) { const td = $(id); td.textContent = text; td.className = cls || ""; }
const secs = (v) => v == null ? "–" : v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(1)} s`;

function worstHealth(s) {
  // the receiver's own health and every section's: the worst, with its reason
  let worst = null;
  for (const [name, part] of [["", s], ...Object.entries(s)]) {
    if (!part || typeof part !== "object" || !(part.health in HEALTH_RANK)) continue;
    if (!worst || HEALTH_RANK[part.health] > HEALTH_RANK[worst.health]) {
      worst = { health: part.health, reason: part.health_reason ? (name ? `${name}: ` : "") + part.health_reason : "" };
    }
  }
  return worst;
}

async function pollStatus() {
  try {
    const r = await fetch(apiUrl("api/status"), { cache: "no-store" });
    const s = await r.json();
    state.serverState = s.state || null;
    const h = worstHealth(s);
    setCell("st-health", h ? h.health : "–", h && h.health === "failed" ? "bad" : h && h.health === "degraded" ? "warn" : "");
    $("st-health").title = h && h.reason ? h.reason : "";
    setCell("st-state", s.state || "–", s.state === "stalled" ? "warn" : "");
    setCell("st-rate", s.frame_rate == null ? "–" : `${s.frame_rate.toFixed(2)} /s`);
    setCell("st-delay", secs(s.delay_s), s.delay_s > 5 ? "warn" : "");
    setCell("st-age", secs(s.data_age_s), s.data_age_s > 30 ? "bad" : s.data_age_s > 5 ? "warn" : "");
    setCell("st-latest", s.latest_time ? s.latest_time.slice(11, 22) : "–");
    // a stream served without a receiver's status (e.g. a replay) has none of these
    const txt = (v) => v == null ? "–" : String(v);
    setCell("st-frames", txt(s.frames_received));
    setCell("st-held", s.buffer_shape ? `${s.frames_held} / ${s.buffer_shape[0]}` : "–");
    setCell("st-lost", txt(s.lost), s.lost ? "warn" : "");
    setCell("st-rejected", txt(s.rejected_total), s.rejected_total ? "warn" : "");
    setCell("st-restarts", txt(s.restarts));
    setCell("st-sender", s.sender_id || "–");
    setCell("st-endpoint", s.endpoint || "–");
    const st = s.stream || {};
    setCell("st-product", [st.product, st.factor ? `factor ${st.factor}` : null].filter(Boolean).join(", ") || "–");
    const web = s.web || {}, me = (web.viewer || []).find((v) => v.id === state.viewer);
    setCell("st-viewers", String(web.viewers ?? "–"));
    setCell("st-dropped", me ? String(me.dropped_rows) : "–", me && me.dropped_rows ? "warn" : "");
    setCell("st-rss", s.rss_mb != null ? `${s.rss_mb.toFixed(0)} MiB` : "–");
  } catch (err) {
    setCell("st-rate", "no status", "bad");
  }
}

// ---- connection ----
function setConn(text, cls) { const b = $("conn"); b.textContent = text; b.className = "badge " + cls; }

function stalled() {
  // the receiver says so, or no row came for a few frame periods (the backfill counts as one)
  if (state.serverState === "stalled") return true;
  if (!state.count) return false;
  const period = state.period === state.period ? state.period * 1000 : 0;
  return performance.now() - state.lastRowAt > Math.max(STALL_PERIODS * period, STALL_MIN_MS);
}

function updateBadge() {
  if (!state.connected) return;
  if (state.paused) setConn("paused", "paused");
  else if (stalled()) setConn("stalled", "stalled");
  else if (state.stream.replay) setConn("replay", "replay");  // a file played back, not live
  else setConn("live", "on");
  $("conn").title = state.stream.replay ? `replay of ${state.stream.source || "a file"}` : "";
}

function apiUrl(path) {  // the chosen stream's endpoint
  return state.streamName == null ? path : `${path}?stream=${encodeURIComponent(state.streamName)}`;
}

let socket = null;

function connect(delay) {
  const ws = new WebSocket(new URL(apiUrl("ws"), location.href).href.replace(/^http/, "ws"));
  socket = ws;
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { delay = 1000; state.connected = true; state.lastRowAt = performance.now(); updateBadge(); };
  ws.onmessage = (ev) => {
    if (ws !== socket) return;  // a stream left behind
    if (typeof ev.data === "string") {
      const msg = JSON.parse(ev.data);
      if (msg.type === "meta") { reset(msg); if (state.auto) state.lo = state.hi = 0; }
      else if (msg.type === "hello") state.viewer = msg.viewer;
      else if (msg.type === "events") setEvents(msg.events);
      else if (msg.type === "background") setBackground(msg.db);
      return;
    }
    if (state.paused) {
      state.pending.push(ev.data);
      if (state.pending.length > state.nrows) state.pending.shift();  // keep at most a ring's worth
      return;
    }
    ingest(ev.data);
    maybeAuto();
  };
  ws.onclose = () => {
    if (ws !== socket) return;
    state.connected = false;
    setConn("disconnected, retrying", "off");
    setTimeout(() => connect(Math.min(delay * 2, 15000)), delay);
  };
}

function maybeAuto() {
  const now = performance.now();
  if (state.auto && now - state.lastAuto > AUTO_EVERY_MS) { state.lastAuto = now; autoLevels(); }
}

// ---- streams: one page server may serve several; ?stream=NAME picks one ----
async function loadStreams() {
  const wanted = new URLSearchParams(location.search).get("stream");
  try {
    const r = await fetch("api/streams", { cache: "no-store" });
    state.streams = (await r.json()).streams.map((s) => s.name);
  } catch (err) { state.streams = []; }
  const sel = $("stream");
  for (const name of state.streams) sel.add(new Option(name, name));
  state.streamName = state.streams.includes(wanted) ? wanted : state.streams[0] ?? null;
  sel.value = state.streamName ?? "";
  $("stream-pick").hidden = state.streams.length < 2;
  sel.onchange = (e) => switchStream(e.target.value);
}

function switchStream(name) {
  state.streamName = name;
  const url = new URL(location.href); url.searchParams.set("stream", name);
  history.replaceState(null, "", url);
  state.events = new Map(); renderEventList();
  state.connected = false; setConn("connecting", "off");
  const old = socket; socket = null;
  if (old) old.close();
  connect(1000); pollStatus();
}

// ---- controls ----
async function init() {
  for (const name of Object.keys(COLORMAPS)) $("cmap").add(new Option(name, name));
  $("cmap").onchange = (e) => { state.cmap = e.target.value; repaintAll(); };
  $("scale").onchange = (e) => {
    state.scale = e.target.value; state.lastAuto = 0;
    if (state.auto) { state.lo = state.hi = 0; autoLevels(); } else repaintAll();
  };
  $("auto").onchange = (e) => { state.auto = e.target.checked; if (state.auto) { state.lastAuto = 0; maybeAuto(); } };
  $("excess").onchange = (e) => {
    state.excess = e.target.checked; state.lastAuto = 0;
    if (state.auto) { state.lo = state.hi = 0; autoLevels(); } else repaintAll();
  };
  const manual = () => {
    const lo = parseFloat($("lo").value), hi = parseFloat($("hi").value);
    if (!(hi > lo)) return;
    state.auto = false; $("auto").checked = false; setLevels(lo, hi);
  };
  $("lo").onchange = manual; $("hi").onchange = manual;
  $("pause").onclick = () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("pause").classList.toggle("active", state.paused);
    updateBadge();
    if (!state.paused) {
      for (const buf of state.pending.splice(0)) ingest(buf);
      maybeAuto();
    }
  };
  $("waterfall").addEventListener("mousemove", onHover);
  $("waterfall").addEventListener("mouseleave", onHover);
  window.addEventListener("resize", () => { state.dirty = true; });
  document.addEventListener("visibilitychange", () => { state.dirty = true; });
  renderEventList();
  await loadStreams();
  connect(1000);
  pollStatus(); setInterval(pollStatus, STATUS_EVERY_MS);
  setInterval(updateBadge, BADGE_EVERY_MS);
  // levels follow the data even when no new row arrives to trigger them (a stopped stream)
  setInterval(() => { if (state.auto && state.count && !state.paused) autoLevels(); }, AUTO_EVERY_MS);
  requestAnimationFrame(frame);
}

init();
