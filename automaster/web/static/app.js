// automaster web app: plain JS, no framework, no network beyond this server.
// The page reads its session token from its own address (?token=...) and sends it with
// every API call (Authorization: Bearer); links and images carry it as ?token=.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};

// ------------------------------------------------------------------ API
function apiUrl(path, params = {}) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) u.searchParams.set(k, v);
  u.searchParams.set("token", TOKEN);
  return u.pathname + u.search;
}
async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + TOKEN }, opts.headers || {});
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { const j = await r.json(); if (j.error) msg = j.error; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}
function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
}

// ------------------------------------------------------------------ state
const S = {
  files: [], job: null, state: null, shownVersion: 0, polling: false, track: 1,
  ranges: null, edited: null, pendingDownload: null,
  ctx: null, buf: { A: null, B: null, R: null }, lufs: { A: null, B: null, R: null },
  gains: { A: 1, B: 1, R: 1 }, hearing: "B", playing: false, startAt: 0, offset: 0,
  nodes: null, wave: null, raf: 0,
};
window.automaster = S; // for tests and curious users

// ------------------------------------------------------------------ upload
function setFiles(list) {
  S.files = Array.from(list).filter((f) => f.size > 0);
  const ul = $("file-list");
  ul.replaceChildren(...S.files.map((f) => el("li", { text: `${f.name} (${(f.size / 1048576).toFixed(1)} MB)` })));
  $("start").disabled = S.files.length === 0;
  if (S.files.length > 1) $("album").checked = true;
  albumControls();
}
$("files").addEventListener("change", (e) => setFiles(e.target.files));
function albumControls() {
  // options the album command does not have are greyed out in album mode
  $("album-options").hidden = !$("album").checked;
  const cs = $("codec-safe");
  const albumHas = !S.cliOptions || (S.cliOptions.album || []).includes("--codec-safe");
  cs.disabled = $("album").checked && !albumHas;
  cs.title = cs.disabled ? "the album command has no codec-safe check; it applies to single files" : "";
}
$("album").addEventListener("change", albumControls);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); setFiles(e.dataTransfer.files); });
$("intensity").addEventListener("input", () => { $("intensity-out").value = Math.round($("intensity").value * 100) + "%"; });

function formData() {
  const fd = new FormData();
  for (const f of S.files) fd.append("file", f, f.name);
  const ref = $("reference").files[0];
  if (ref) fd.append("reference", ref, ref.name);
  const put = (k, v) => { if (v !== "" && v !== null && v !== undefined) fd.append(k, v); };
  put("platform", $("platform").value);
  put("target", $("target").value);
  put("ceiling", $("ceiling").value);
  if ($("intensity").value !== "1") put("intensity", $("intensity").value);
  // the restoration option exists only in CLIs that have --restore (GET /api/info)
  const cmd = $("album").checked ? "album" : "master";
  if (S.cliOptions && (S.cliOptions[cmd] || []).includes("--restore")) put("restore", $("restore").checked ? "auto" : "off");
  if ($("denoise").value !== "" && +$("denoise").value > 0) put("denoise", $("denoise").value);
  if ($("codec-safe").checked && !$("codec-safe").disabled) put("codec_safe", "1");
  put("format", $("format").value);
  put("bit_depth", $("bit-depth").value);
  if ($("album").checked) {
    put("album", "1");
    if ($("crossfade").value) put("crossfade", $("crossfade").value); else put("gap", $("gap").value);
    put("fade_in", $("fade-in").value);
    put("fade_out", $("fade-out").value);
    put("sequence", $("suggest-first").checked ? "auto" : "keep");
  }
  return fd;
}

$("start").addEventListener("click", () => {
  showError("");
  if (S.job) { api("/api/jobs/" + S.job, { method: "DELETE" }).catch(() => {}); S.job = null; }
  stop();
  S.shownVersion = 0; S.edited = null;
  $("start").disabled = true;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  xhr.setRequestHeader("Authorization", "Bearer " + TOKEN);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      const p = e.loaded / e.total;
      $("upload-bar").style.width = (100 * p).toFixed(1) + "%";
      $("upload-text").textContent = `${(e.loaded / 1048576).toFixed(1)} of ${(e.total / 1048576).toFixed(1)} MB`;
    }
  };
  xhr.onload = () => {
    $("start").disabled = false;
    let j = {};
    try { j = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status !== 200) { showError(j.error || `upload failed (${xhr.status})`); return; }
    $("upload-bar").style.width = "100%";
    $("upload-text").textContent = "uploaded";
    S.job = j.id;
    poll();
  };
  xhr.onerror = () => { $("start").disabled = false; showError("upload failed: the server did not answer"); };
  xhr.send(formData());
});

// ------------------------------------------------------------------ polling
async function poll() {
  if (S.polling || !S.job) return;
  S.polling = true;
  const id = S.job;
  try {
    while (S.job === id) {
      let st;
      try { st = await (await api("/api/jobs/" + id)).json(); } catch (e) { showError(e.message); break; }
      S.state = st;
      document.body.dataset.status = st.status;
      $("master-bar").style.width = (100 * st.progress).toFixed(1) + "%";
      $("master-text").textContent = st.status === "running" ? `${Math.round(100 * st.progress)}%` : st.status;
      $("warnings").replaceChildren(...(st.warnings || []).map((w) => el("li", { text: w })));
      if (st.status === "failed") {
        S.pendingDownload = null;   // e.g. --ddp refused a track shorter than 4 s
        showError(st.error || "mastering failed");
        if (st.ready && S.shownVersion === 0) await showResult(st);
        break;
      }
      if (st.status === "done") {
        showError("");
        await showResult(st);
        break;
      }
      await new Promise((r) => setTimeout(r, 400));
    }
  } finally {
    S.polling = false;
  }
}

async function rerender(body) {
  showError("");
  document.body.dataset.status = "queued";
  try {
    await api(`/api/jobs/${S.job}/settings`, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
  } catch (e) { showError(e.message); document.body.dataset.status = "failed"; return; }
  poll();
}

// ------------------------------------------------------------------ result
async function showResult(st) {
  $("result").hidden = false;
  const kind = st.kind;
  const n = kind === "album" ? (st.report ? st.report.tracks.length : st.files.length) : st.files.length;
  const sel = $("track");
  $("track-row").hidden = n < 2;
  if (sel.options.length !== n || kind === "album") {
    const names = kind === "album" && st.report ? st.report.tracks.map((t) => t.title) : st.files.map((f) => f.name);
    sel.replaceChildren(...names.map((name, i) => el("option", { value: String(i + 1), text: `${i + 1}. ${name}` })));
    if (S.track > n) S.track = 1;
    sel.value = String(S.track);
  }
  if (kind === "batch" && Array.isArray(st.report) && !st.report[S.track - 1]) {
    // a partial batch: show the first file that was mastered
    const k = st.report.findIndex(Boolean);
    if (k >= 0) { S.track = k + 1; sel.value = String(S.track); }
  }
  if (kind === "batch" && Array.isArray(st.report)) [...sel.options].forEach((o, i) => { o.disabled = !st.report[i]; });
  $("dl-format").value = st.output_format || st.format;
  $("dl-bit-depth").value = st.output_bit_depth || st.bit_depth;
  for (const o of $("dl-format").options) o.disabled = kind === "album" && LOSSY.includes(o.value);
  $("ref-play").hidden = !st.reference;
  renderReport(st);
  renderDownloads(st);
  $("settings-panel").hidden = kind !== "single";
  $("album-panel").hidden = kind !== "album";
  if (kind === "single") await renderSettings(st);
  if (kind === "album") renderAlbum(st);
  const changedAudio = S.shownVersion !== st.version;
  S.shownVersion = st.version;
  document.body.dataset.version = String(st.version);
  if (changedAudio) await loadAudio(st);
  if (S.pendingDownload && st.status === "done" && S.pendingDownload.ready(st)) {
    const f = S.pendingDownload.go; S.pendingDownload = null; f();
  }
}
$("track").addEventListener("change", async () => { S.track = +$("track").value; await loadAudio(S.state, true); });

function trackFigures(st) {
  // loudness of original (A), master (B), reference (R) for the shown track
  const r = st.report;
  if (st.kind === "single") return { A: r.before.integrated_lufs, B: r.after.integrated_lufs, R: r.reference ? r.reference.integrated_lufs : null };
  if (st.kind === "batch") {
    const t = r[S.track - 1];   // null: a file the batch could not master
    return t ? { A: t.before.integrated_lufs, B: t.after.integrated_lufs, R: null } : { A: NaN, B: NaN, R: null };
  }
  const t = r.tracks[S.track - 1];
  const ref = (r.album || {}).reference;
  return { A: t.input_measurement.integrated_lufs, B: t.lufs, R: ref ? ref.integrated_lufs : null };
}

async function decode(path, params) {
  const ab = await (await api(apiUrl(path, params))).arrayBuffer();
  if (!S.ctx) S.ctx = new AudioContext();
  try { return await S.ctx.decodeAudioData(ab); } catch (e) { throw new Error(`the browser cannot play this file (${e.message || e}); download it instead`); }
}

async function loadAudio(st, trackChanged = false) {
  const track = st.kind === "single" ? null : S.track;
  const wasPlaying = S.playing; const pos = position();
  stop();
  try {
    const jobs = [decode(`/api/jobs/${S.job}/master`, { track, v: st.version })];
    if (trackChanged || !S.buf.A || S.bufTrack !== track) jobs.push(decode(`/api/jobs/${S.job}/original`, { track }));
    const [master, orig] = await Promise.all(jobs);
    S.buf.B = master;
    if (orig) S.buf.A = orig;
    S.bufTrack = track;
    if (st.reference && !S.buf.R) S.buf.R = await decode(`/api/jobs/${S.job}/reference`);
  } catch (e) { showError(e.message); return; }
  S.lufs = trackFigures(st);
  matchGains();
  S.wave = null;
  drawWave(); drawSpectrum();
  if (wasPlaying) play(pos);
  else { S.offset = Math.min(pos, S.buf.B.duration); updateTime(); }
}

// loudness match: everything plays at the quietest one's loudness (never louder than made)
function matchGains() {
  const ls = ["A", "B", "R"].filter((k) => S.buf[k] && Number.isFinite(S.lufs[k]));
  const level = Math.min(...ls.map((k) => S.lufs[k]));
  for (const k of ["A", "B", "R"]) S.gains[k] = ls.includes(k) ? Math.pow(10, (level - S.lufs[k]) / 20) : 1;
  const db = (k) => (20 * Math.log10(S.gains[k])).toFixed(1);
  $("match").textContent = ls.length > 1 ? `matched at ${level.toFixed(1)} LUFS: original ${db("A")} dB, master ${db("B")} dB` + (S.buf.R ? `, reference ${db("R")} dB` : "") : "";
}

// ------------------------------------------------------------------ playback (A/B)
function position() {
  if (!S.playing || !S.ctx) return S.offset;
  return S.offset + (S.ctx.currentTime - S.startAt);
}
function stop() {
  if (S.nodes) { for (const n of S.nodes.src) { try { n.stop(); } catch (e) { /* already stopped */ } } }
  if (S.playing) S.offset = position();
  S.nodes = null; S.playing = false;
  $("play").textContent = "Play";
  cancelAnimationFrame(S.raf);
}
function play(at) {
  if (!S.buf.B) return;
  if (!S.ctx) S.ctx = new AudioContext();
  S.ctx.resume();
  stop();
  const dur = S.buf.B.duration;
  S.offset = at !== undefined ? at : (S.offset >= dur - 0.05 ? 0 : S.offset);
  const t0 = S.ctx.currentTime + 0.03;
  const src = [], gain = {};
  for (const k of ["A", "B", "R"]) {
    const b = S.buf[k];
    if (!b) continue;
    const s = S.ctx.createBufferSource();
    s.buffer = b;
    const g = S.ctx.createGain();
    g.gain.value = k === S.hearing ? S.gains[k] : 0;
    s.connect(g).connect(S.ctx.destination);
    if (S.offset < b.duration) s.start(t0, S.offset);
    src.push(s); gain[k] = g;
  }
  src[0].onended = () => { if (S.nodes && S.nodes.src === src) { stop(); S.offset = 0; updateTime(); } };
  S.nodes = { src, gain };
  S.startAt = t0; S.playing = true;
  $("play").textContent = "Pause";
  const tick = () => { updateTime(); drawWave(); S.raf = requestAnimationFrame(tick); };
  tick();
}
function hear(k) {
  if (!S.buf[k]) return;
  S.hearing = k;
  if (S.nodes) {
    const t = S.ctx.currentTime;
    for (const [key, g] of Object.entries(S.nodes.gain)) {
      g.gain.cancelScheduledValues(t);
      g.gain.setTargetAtTime(key === k ? S.gains[key] : 0, t, 0.002); // ~10 ms, no click
    }
  }
  $("ab").setAttribute("aria-pressed", String(k === "B"));
  $("hearing").textContent = { A: "A, original", B: "B, master", R: "reference" }[k];
  $("ref-play").classList.toggle("on", k === "R");
}
$("play").addEventListener("click", () => (S.playing ? stop() : play()));
$("ab").addEventListener("click", () => hear(S.hearing === "B" ? "A" : "B"));
$("ref-play").addEventListener("click", () => hear(S.hearing === "R" ? "B" : "R"));
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, select, textarea") || $("result").hidden) return;
  if (e.key === "a" || e.key === "A") hear("A");
  else if (e.key === "b" || e.key === "B") hear("B");
  else if (e.key === "r" || e.key === "R") hear("R");
  else if (e.key === " ") { e.preventDefault(); S.playing ? stop() : play(); }
});
function fmtTime(s) { const m = Math.floor(s / 60); return `${m}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`; }
function updateTime() { $("time").textContent = fmtTime(Math.max(0, position())); }

// ------------------------------------------------------------------ drawing
function peaks(buf, gain, cols) {
  const n = buf.length, chans = [];
  for (let c = 0; c < buf.numberOfChannels; c++) chans.push(buf.getChannelData(c));
  const lo = new Float32Array(cols), hi = new Float32Array(cols);
  for (let x = 0; x < cols; x++) {
    const a = Math.floor((x * n) / cols), b = Math.max(a + 1, Math.floor(((x + 1) * n) / cols));
    let mn = 0, mx = 0;
    for (const d of chans) for (let i = a; i < b && i < n; i++) { const v = d[i]; if (v < mn) mn = v; if (v > mx) mx = v; }
    lo[x] = mn * gain; hi[x] = mx * gain;
  }
  return { lo, hi };
}
function drawWave() {
  const cv = $("wave"), g = cv.getContext("2d"), W = cv.width, H = cv.height;
  if (!S.buf.B || !S.buf.A) return;
  if (!S.wave) S.wave = { A: peaks(S.buf.A, S.gains.A, W), B: peaks(S.buf.B, S.gains.B, W) };
  g.fillStyle = "#111318"; g.fillRect(0, 0, W, H);
  const lane = H / 2;
  const dur = S.buf.B.duration, durA = S.buf.A.duration;
  [["A", "#b9bfcc", 0, durA / dur], ["B", "#4aa3ff", 1, 1]].forEach(([k, color, row, span]) => {
    const p = S.wave[k], mid = lane * row + lane / 2;
    g.fillStyle = color; g.globalAlpha = S.hearing === k ? 1 : 0.55;
    const cols = Math.round(W * Math.min(1, span));
    for (let x = 0; x < cols; x++) {
      const i = Math.floor((x * W) / Math.max(cols, 1));
      const y1 = mid - p.hi[i] * (lane / 2 - 4), y2 = mid - p.lo[i] * (lane / 2 - 4);
      g.fillRect(x, y1, 1, Math.max(1, y2 - y1));
    }
    g.globalAlpha = 1; g.fillStyle = "#9aa1b2"; g.font = "12px system-ui";
    g.fillText(k === "A" ? "A  original (level-matched)" : "B  master (level-matched)", 8, lane * row + 14);
  });
  g.strokeStyle = "#303543"; g.beginPath(); g.moveTo(0, lane); g.lineTo(W, lane); g.stroke();
  const x = (position() / dur) * W;
  g.strokeStyle = "#ffffff"; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, H); g.stroke();
}
$("wave").addEventListener("click", (e) => {
  if (!S.buf.B) return;
  const r = e.target.getBoundingClientRect();
  const t = ((e.clientX - r.left) / r.width) * S.buf.B.duration;
  if (S.playing) play(t); else { S.offset = t; updateTime(); drawWave(); }
});

// radix-2 FFT in place (re, im: Float64Array of a power-of-two length)
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len, wr = Math.cos(ang), wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1, ci = 0;
      for (let j = 0; j < len / 2; j++) {
        const a = i + j, b = a + len / 2;
        const tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
        const ncr = cr * wr - ci * wi; ci = cr * wi + ci * wr; cr = ncr;
      }
    }
  }
}
// long-term power spectrum (Hann, 4096 points, up to 300 frames spread over the file),
// 1/6-octave smoothed on a log grid, in dB, including the loudness-match gain
function longTermSpectrum(buf, gain) {
  const N = 4096, sr = buf.sampleRate, n = buf.length;
  const frames = Math.max(1, Math.min(300, Math.floor(n / N)));
  const step = Math.max(N, Math.floor((n - N) / frames));
  const pow = new Float64Array(N / 2 + 1), win = new Float64Array(N);
  for (let i = 0; i < N; i++) win[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / N);
  const chans = []; for (let c = 0; c < buf.numberOfChannels; c++) chans.push(buf.getChannelData(c));
  let count = 0;
  for (let s = 0; s + N <= n && count < frames; s += step, count++) {
    for (const d of chans) {
      const re = new Float64Array(N), im = new Float64Array(N);
      for (let i = 0; i < N; i++) re[i] = d[s + i] * win[i] * gain;
      fft(re, im);
      for (let k = 0; k <= N / 2; k++) pow[k] += re[k] * re[k] + im[k] * im[k];
    }
  }
  const norm = 1 / Math.max(1, count * chans.length);
  const grid = [], db = [];
  for (let f = 20; f < Math.min(20000, sr / 2 * 0.98); f *= Math.pow(2, 1 / 12)) {
    const lo = f / Math.pow(2, 1 / 12), hi = f * Math.pow(2, 1 / 12);
    let sum = 0, m = 0;
    for (let k = Math.max(1, Math.floor((lo * N) / sr)); k <= Math.min(N / 2, Math.ceil((hi * N) / sr)); k++) { sum += pow[k]; m++; }
    grid.push(f); db.push(10 * Math.log10(Math.max(1e-20, (sum / Math.max(1, m)) * norm)));
  }
  return { f: grid, db };
}
function drawSpectrum() {
  const cv = $("spectrum"), g = cv.getContext("2d"), W = cv.width, H = cv.height;
  g.fillStyle = "#111318"; g.fillRect(0, 0, W, H);
  const curves = [["A", "#b9bfcc", "original"], ["B", "#4aa3ff", "master"], ["R", "#5fd38d", "reference"]]
    .filter(([k]) => S.buf[k]).map(([k, c, name]) => [longTermSpectrum(S.buf[k], S.gains[k]), c, name]);
  if (!curves.length) return;
  const all = curves.flatMap(([s]) => s.db);
  const top = Math.ceil(Math.max(...all) / 10) * 10, bottom = top - 70;
  const L = 44, B = 22, fx = (f) => L + ((Math.log10(f) - Math.log10(20)) / (Math.log10(20000) - Math.log10(20))) * (W - L - 8);
  const fy = (d) => 6 + ((top - d) / (top - bottom)) * (H - B - 6);
  g.strokeStyle = "#262a35"; g.fillStyle = "#9aa1b2"; g.font = "11px system-ui";
  for (const f of [20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]) {
    g.beginPath(); g.moveTo(fx(f), 6); g.lineTo(fx(f), H - B); g.stroke();
    g.fillText(f >= 1000 ? f / 1000 + "k" : String(f), fx(f) - 8, H - 6);
  }
  for (let d = bottom; d <= top; d += 10) {
    g.beginPath(); g.moveTo(L, fy(d)); g.lineTo(W - 8, fy(d)); g.stroke();
    g.fillText(d + " dB", 2, fy(d) + 4);
  }
  curves.forEach(([s, color, name], i) => {
    g.strokeStyle = color; g.lineWidth = 1.6; g.beginPath();
    s.f.forEach((f, j) => { const y = fy(Math.max(bottom, s.db[j])); j ? g.lineTo(fx(f), y) : g.moveTo(fx(f), y); });
    g.stroke(); g.lineWidth = 1;
    g.fillStyle = color; g.fillText(name, W - 90, 18 + 14 * i);
  });
  g.fillStyle = "#9aa1b2"; g.fillText("long-term spectrum, 1/6 octave, at equal loudness", L + 6, 18);
}

// ------------------------------------------------------------------ settings
const GROUP_OF = (name) => name.startsWith("eq.") ? "Tone" : name.startsWith("multiband.") ? "Dynamics"
  : name.startsWith("saturation.") ? "Color" : name.startsWith("width.") ? "Stereo" : "Loudness";
const LABELS = {
  "eq.highpass.cutoff_hz": "Rumble high-pass (0 = off)", "eq.low_shelf.cutoff_hz": "Low shelf frequency",
  "eq.low_shelf.gain_db": "Low shelf gain", "eq.low_mid.center_hz": "Low-mid bell frequency",
  "eq.low_mid.gain_db": "Low-mid bell gain", "eq.low_mid.q": "Low-mid bell Q",
  "eq.mid.center_hz": "Mid bell frequency", "eq.mid.gain_db": "Mid bell gain", "eq.mid.q": "Mid bell Q",
  "eq.presence.center_hz": "Presence bell frequency", "eq.presence.gain_db": "Presence bell gain",
  "eq.presence.q": "Presence bell Q", "eq.high_shelf.cutoff_hz": "High shelf frequency",
  "eq.high_shelf.gain_db": "High shelf gain", "multiband.crossover_low_hz": "Low/mid crossover",
  "multiband.crossover_high_hz": "Mid/high crossover", "multiband.low.threshold_db": "Low band threshold",
  "multiband.low.ratio": "Low band ratio", "multiband.mid.threshold_db": "Mid band threshold",
  "multiband.mid.ratio": "Mid band ratio", "multiband.high.threshold_db": "High band threshold",
  "multiband.high.ratio": "High band ratio", "multiband.attack_ms": "Attack", "multiband.release_ms": "Release",
  "saturation.amount": "Saturation amount", "width.width": "Stereo width", "width.mono_below_hz": "Bass mono below",
  "limiter.release_ms": "Limiter release",
};
const label = (name) => LABELS[name] || name;
const toNorm = (r, v) => r.scale === "log" ? Math.log(v / r.low) / Math.log(r.high / r.low) : (v - r.low) / (r.high - r.low);
const fromNorm = (r, p) => r.scale === "log" ? r.low * Math.exp(p * Math.log(r.high / r.low)) : r.low + p * (r.high - r.low);
function fmtValue(r, v) {
  const u = r.unit || "";
  if (u === "Hz") return v >= 1000 ? (v / 1000).toFixed(2) + " kHz" : v.toFixed(0) + " Hz";
  if (u === "x") return Math.round(v * 100) + "%";
  if (u === ":1") return v.toFixed(2) + ":1";
  if (u === "ms") return v.toFixed(0) + " ms";
  if (u.startsWith("dB")) return (v >= 0 ? "+" : "") + v.toFixed(1) + " dB";
  return v.toFixed(2);
}
async function renderSettings(st) {
  if (!S.ranges) {
    try { S.ranges = await (await api("/api/chain")).json(); } catch (e) { showError("settings controls unavailable: " + e.message); return; }
  }
  if (!S.chosen) S.chosen = Object.assign({}, st.settings);
  S.edited = Object.assign({}, st.settings);
  const words = (st.report && st.report.settings_in_words) || {};
  const groups = {};
  for (const g of ["Tone", "Dynamics", "Color", "Stereo", "Loudness"]) {
    const box = el("div", { class: "group", "data-group": g }, el("h3", { text: g }),
      el("ul", {}, ...(words[g] || []).map((line) => el("li", { text: line }))));
    groups[g] = box;
  }
  for (const [name, r] of Object.entries(S.ranges)) {
    if (!(name in S.edited)) continue;
    const v = S.edited[name];
    const input = el("input", { type: "range", min: "0", max: "1", step: "0.001", "data-param": name, "aria-label": label(name) });
    input.value = String(Math.min(1, Math.max(0, toNorm(r, v))));
    const out = el("output", { text: fmtValue(r, v) });
    const row = el("div", { class: "ctl" + (Math.abs(v - S.chosen[name]) > 1e-6 * Math.max(1, Math.abs(v)) ? " changed" : "") },
      el("span", { text: label(name) }), input, out);
    input.addEventListener("input", () => { out.textContent = fmtValue(r, fromNorm(r, +input.value)); });
    input.addEventListener("change", () => {
      S.edited[name] = fromNorm(r, +input.value);
      rerender({ settings: S.edited });
    });
    groups[GROUP_OF(name)].append(row);
  }
  $("settings-groups").replaceChildren(...Object.values(groups));
}
$("reset-settings").addEventListener("click", () => { if (S.chosen) rerender({ settings: S.chosen }); });

// ------------------------------------------------------------------ album
function renderAlbum(st) {
  const a = st.album_options || {};
  $("a-gap").value = a.gap !== undefined ? a.gap : "";
  $("a-crossfade").value = a.crossfade !== undefined ? a.crossfade : "";
  $("a-fade-in").value = a.fade_in !== undefined ? a.fade_in : 0;
  $("a-fade-out").value = a.fade_out !== undefined ? a.fade_out : 0;
  const doc = st.report || {};
  const reasons = {};
  for (const t of ((doc.sequence || {}).tracks || [])) reasons[t.title] = t.reason;
  const ol = $("order");
  ol.replaceChildren(...st.order.map((o) => {
    const title = o.name.replace(/\.[^.]+$/, "");
    const li = el("li", { draggable: "true", "data-index": String(o.index) }, o.name);
    if (reasons[title] && reasons[title] !== "given order") li.append(el("span", { class: "sub", text: reasons[title] }));
    return li;
  }));
  let dragged = null;
  for (const li of ol.children) {
    li.addEventListener("dragstart", () => { dragged = li; li.classList.add("dragging"); });
    li.addEventListener("dragend", () => { li.classList.remove("dragging"); dragged = null; });
    li.addEventListener("dragover", (e) => {
      e.preventDefault();
      if (!dragged || dragged === li) return;
      const r = li.getBoundingClientRect();
      ol.insertBefore(dragged, e.clientY < r.top + r.height / 2 ? li : li.nextSibling);
    });
  }
  const al = doc.album || {};
  const fig = $("album-figures");
  fig.replaceChildren(
    el("dl", { class: "kv" },
      el("dt", { text: "Album loudness" }), el("dd", { text: `${al.integrated_lufs} LUFS (target ${al.target_lufs}, ${al.loudness_mode} mode)` }),
      el("dt", { text: "True peak" }), el("dd", { text: `${al.true_peak_dbtp} dBTP (ceiling ${al.ceiling_dbtp})` }),
      el("dt", { text: "Loudness range" }), el("dd", { text: `${al.loudness_range_lu} LU` }),
      el("dt", { text: "Track loudness spread" }), el("dd", { text: `${al.input_loudness_spread_lu} LU in, ${al.track_loudness_spread_lu} LU out` }),
      el("dt", { text: "Duration" }), el("dd", { text: fmtTime(al.duration_s || 0) })),
    table(["#", "Track", "Start", "Length", "In LUFS", "LUFS", "True peak dBTP", "LRA LU", "Settings from"],
      (doc.tracks || []).map((t) => [t.number, t.title, fmtTime(t.start_s), fmtTime(t.duration_s),
        t.input_measurement.integrated_lufs, t.lufs, t.true_peak_dbtp, t.loudness_range_lu, t.setting_source])),
    ...(al.reference ? [el("h3", { text: "Reference" }), kv(al.reference)] : []),
    ...translationPanel(doc.translation));
  const img = $("album-plot");
  img.src = apiUrl(`/api/jobs/${S.job}/file/album.png`, { v: st.version });
  img.hidden = false;
}
function albumBody(sequence) {
  const num = (id) => ($(id).value === "" ? null : +$(id).value);
  const body = { sequence, fade_in: num("a-fade-in") || 0, fade_out: num("a-fade-out") || 0 };
  if (num("a-crossfade")) body.crossfade = num("a-crossfade"); else { body.crossfade = null; body.gap = num("a-gap") || 0; }
  body.order = Array.from($("order").children).map((li) => +li.dataset.index - 1);
  return body;
}
$("suggest").addEventListener("click", () => rerender({ album: albumBody("auto") }));
$("apply-album").addEventListener("click", () => rerender({ album: albumBody("keep") }));

// ------------------------------------------------------------------ report
const LOSSY = ["ogg", "opus", "mp3"];
function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", { text: c === null || c === undefined ? "n/a" : String(c) }))))));
}
const SHOWN = new Set(["input", "output", "sample_rate", "channels", "duration_s", "target_lufs", "ceiling_dbtp", "intensity",
  "source", "model", "before", "after", "gain_db", "true_peak_trim_db", "limiter_ceiling_dbtp", "warnings", "timings_s",
  "spectrum", "gain_reduction", "settings", "settings_in_words", "reference"]);
const TITLES = { restoration: "Restoration findings", restore: "Restoration findings", translation: "Playback-system check",
  playback: "Playback-system check", playback_check: "Playback-system check", systems: "Playback-system check",
  codec: "After lossy encoding", lossy: "After lossy encoding", codec_check: "After lossy encoding", codec_safe: "After lossy encoding" };
function kv(obj, depth = 0) {
  if (obj === null || typeof obj !== "object") return el("span", { text: obj === null ? "n/a" : String(obj) });
  if (Array.isArray(obj)) {
    if (obj.length > 24 && obj.every((v) => typeof v === "number")) return el("span", { text: `(${obj.length} values)` });
    if (obj.every((v) => v === null || typeof v !== "object")) return el("span", { text: obj.join(", ") || "none" });
    return el("div", {}, ...obj.slice(0, 40).map((v) => kv(v, depth + 1)));
  }
  const dl = el("dl", { class: "kv" });
  for (const [k, v] of Object.entries(obj)) dl.append(el("dt", { text: k.replace(/_/g, " ") }), el("dd", {}, depth > 3 ? el("span", { text: JSON.stringify(v) }) : kv(v, depth + 1)));
  return dl;
}
function singleReport(r, name) {
  const rows = [["Integrated loudness", "integrated_lufs", "LUFS"], ["True peak", "true_peak_dbtp", "dBTP"],
    ["Sample peak", "sample_peak_dbfs", "dBFS"], ["Loudness range", "loudness_range_lu", "LU"],
    ["Crest factor", "crest_db", "dB"], ["RMS", "rms_dbfs", "dBFS"]]
    .map(([t, k, u]) => [`${t} (${u})`, (r.before || {})[k], (r.after || {})[k]]);
  const parts = [el("h3", { text: name }), table(["", "original", "master"], rows),
    el("dl", { class: "kv" },
      el("dt", { text: "Target / ceiling" }), el("dd", { text: `${r.target_lufs} LUFS / ${r.ceiling_dbtp} dBTP` }),
      el("dt", { text: "Settings from" }), el("dd", { text: `${r.source}${r.model ? " (" + r.model + ")" : ""}` }),
      el("dt", { text: "Level change" }), el("dd", { text: `${r.gain_db} dB` }))];
  if (r.reference) parts.push(el("h3", { text: "Reference" }), kv(r.reference));
  parts.push(...restorationPanel(r.restoration), ...translationPanel(r.translation));
  for (const [k, v] of Object.entries(r)) {
    if (SHOWN.has(k) || k === "restoration" || k === "translation" || v === null || v === undefined) continue;
    parts.push(el("h3", { text: TITLES[k] || k.replace(/_/g, " ") }), kv(v));
  }
  if ((r.warnings || []).length) parts.push(el("h3", { text: "Warnings" }), el("ul", {}, ...r.warnings.map((w) => el("li", { text: w }))));
  return parts;
}
function restorationPanel(rest) {
  if (!rest || !rest.findings) return [];
  const rows = rest.findings.map((f) => [f.problem, f.found ? "yes" : "no", f.applied ? "yes" : "no", f.summary]);
  return [el("h3", { text: `Restoration (${rest.mode})` }), table(["Problem", "Found", "Fixed", "What was measured and done"], rows)];
}
function translationPanel(tr) {
  if (!tr) return [];
  const parts = [];
  if (tr.codec) {
    const c = tr.codec;
    parts.push(el("h3", { text: "After lossy encoding" }),
      el("p", { class: "sub", text: `ceiling ${c.ceiling_dbtp} dBTP: ${c.met ? "met" : "NOT met"} after ${c.encodes} encode(s), limiter ceiling ${c.limiter_ceiling_dbtp} dBTP` }),
      table(["Codec", "Decoded true peak dBTP", "Decoded LUFS"], (c.codecs || []).map((k) => [k.description || k.codec, k.decoded_true_peak_dbtp, k.decoded_lufs])));
  }
  if (tr.playback && tr.playback.systems) {
    const sys = Object.values(tr.playback.systems);
    parts.push(el("h3", { text: "Playback-system check" }),
      table(["System", "Loudness LUFS", "Change LU", "Low end kept", "Warnings"],
        sys.map((s) => [s.label, s.loudness_lufs, s.loudness_change_lu,
          s.share_below_150_hz_kept === null || s.share_below_150_hz_kept === undefined ? null : `${Math.round(100 * s.share_below_150_hz_kept)}%`,
          (s.warnings || []).join("; ") || "none"])));
  }
  return parts;
}
function renderReport(st) {
  const box = $("report");
  if (!st.report) { box.replaceChildren(); return; }
  if (st.kind === "single") box.replaceChildren(...singleReport(st.report, st.files[0].name));
  else if (st.kind === "batch") box.replaceChildren(...st.report.flatMap((r, i) => r ? singleReport(r, st.files[i].name)
    : [el("h3", { text: `${st.files[i].name}: not mastered (see the error above)` })]));
  else {
    const d = st.report, parts = [];
    for (const [k, v] of Object.entries(d)) {
      if (["album", "tracks", "sequence", "loudness_over_time", "timings_s", "warnings"].includes(k) || v === null) continue;
      parts.push(el("h3", { text: TITLES[k] || k.replace(/_/g, " ") }), kv(v));
    }
    if ((d.warnings || []).length) parts.push(el("h3", { text: "Warnings" }), el("ul", {}, ...d.warnings.map((w) => el("li", { text: w }))));
    parts.unshift(el("p", { class: "sub", text: "Album figures and per-track loudness are in the album panel above." }));
    box.replaceChildren(...parts);
  }
}

// ------------------------------------------------------------------ downloads
function download(url) {
  const a = el("a", { href: url, download: "" });
  document.body.append(a); a.click(); a.remove();
}
function renderDownloads(st) {
  const box = $("downloads");
  const btn = (id, text, fn) => { const b = el("button", { id, text }); b.addEventListener("click", fn); return b; };
  const wantAudio = (go) => () => {
    const format = $("dl-format").value, bit_depth = $("dl-bit-depth").value;
    if (format === S.state.output_format && (bit_depth === S.state.output_bit_depth || LOSSY.includes(format))) { go(); return; }
    // another format or word length: the same settings rendered again by the CLI
    const want = LOSSY.includes(format) ? S.state.bit_depth : bit_depth;
    S.pendingDownload = { ready: (s) => s.output_format === format && s.output_bit_depth === want, go };
    const body = { format, bit_depth };
    if (S.state.kind === "single" && S.edited) body.settings = S.edited;
    rerender(body);
  };
  const items = [];
  if (st.kind === "album") {
    items.push(btn("download-master", "Album (one continuous file)", wantAudio(() => download(apiUrl(`/api/jobs/${S.job}/master`, { download: 1 })))));
    (st.report ? st.report.tracks : []).forEach((t, i) => items.push(btn(`download-track-${i + 1}`, `${t.number}. ${t.title}`,
      wantAudio(() => download(apiUrl(`/api/jobs/${S.job}/master`, { track: i + 1, download: 1 }))))));
    items.push(btn("download-cue", "CUE sheet", () => download(apiUrl(`/api/jobs/${S.job}/file/album.cue`, { download: 1 }))));
    // DDP 2.00 image for CD replication: rendered on request (44.1 kHz 16-bit, Red Book limits)
    const getDdp = () => download(apiUrl(`/api/jobs/${S.job}/file/ddp.zip`, { download: 1 }));
    items.push(btn("download-ddp", "DDP image for CD (.zip)", () => {
      if ((st.album_options || {}).ddp && st.report && st.report.ddp) { getDdp(); return; }
      S.pendingDownload = { ready: (s) => Boolean(s.report && s.report.ddp), go: getDdp };
      rerender({ album: { ...albumBody((st.album_options || {}).sequence || "keep"), ddp: true } });
    }));
    items.push(btn("download-report", "Report (album.json)", () => download(apiUrl(`/api/jobs/${S.job}/file/album.json`, { download: 1 }))));
  } else {
    st.files.forEach((f, i) => {
      if (st.kind === "batch" && Array.isArray(st.report) && !st.report[i]) return;  // not mastered
      items.push(btn(i ? `download-master-${i + 1}` : "download-master", st.kind === "single" ? "Master" : `Master: ${f.name}`,
        wantAudio(() => download(apiUrl(`/api/jobs/${S.job}/master`, { track: st.kind === "single" ? null : i + 1, download: 1 })))));
    });
    items.push(btn("download-settings", "Settings (JSON)", () => download(apiUrl(`/api/jobs/${S.job}/file/settings.json`, { download: 1 }))));
    if (st.kind === "single") {
      items.push(btn("download-report", "Report (JSON)", () => download(apiUrl(`/api/jobs/${S.job}/file/report.json`, { download: 1 }))));
      items.push(btn("download-report-png", "Report (PNG)", () => download(apiUrl(`/api/jobs/${S.job}/file/report.png`, { download: 1 }))));
    }
  }
  box.replaceChildren(...items);
}

// ------------------------------------------------------------------ start-up
(async () => {
  if (!TOKEN) showError("This page needs its token: open the address that `automaster serve` printed (…/?token=…).");
  try {
    const info = await (await api("/api/info")).json();
    S.cliOptions = info.options;
    albumControls();
    if (!(info.options.master || []).includes("--restore")) {
      $("restore").disabled = true;
      $("restore").parentElement.title = "this automaster version has no --restore option";
      $("restore").parentElement.append(el("span", { class: "unit", text: " (not in this version)" }));
    }
    const ps = await (await api("/api/platforms")).json();
    for (const p of ps) $("platform").append(el("option", { value: p.name, text: `${p.name} (${p.target_lufs} LUFS, ${p.ceiling_dbtp} dBTP)` }));
  } catch (e) { showError(e.message); }
})();
