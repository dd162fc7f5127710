// reparam explore: sliders over the latent space, test images, interpolation, prior samples.
// Talks only to its own server (/api/...); no libraries.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PAGE = 40; // test images per gallery page
const TOP = 8; // sliders shown before "More dimensions"
const ROW = 14; // pixels per dimension in the posterior chart
const state = { meta: null, z: [], a: null, b: null, page: 0, seed: 0, inputs: [], label: null };

function status(text) { $("#status").textContent = text; }

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

const zParam = (z) => z.map((v) => v.toFixed(4)).join(",");
// A conditional run decodes and samples given the selected class.
const labelParam = () => (state.label === null ? "" : `&label=${state.label}`);

// Live decoding: at most one request in flight; the latest slider position wins.
const live = { busy: false, dirty: false };
function decode() {
  if (live.busy) { live.dirty = true; return; }
  live.busy = true;
  live.dirty = false;
  $("#decoded").src = "/api/decode.png?z=" + zParam(state.z) + labelParam();
}
function decoded() {
  live.busy = false;
  if (live.dirty) decode();
}

function sliderRow(d, rank) {
  const m = state.meta;
  const [lo, hi] = m.ranges[d];
  const row = document.createElement("label");
  row.className = "slider" + (m.active[d] ? "" : " inactive");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = "z" + d;
  name.title = `${m.what}: ${m.scores[d]}`;
  const input = Object.assign(document.createElement("input"), { type: "range", min: lo, max: hi, step: (hi - lo) / 200 });
  input.dataset.dim = d;
  input.setAttribute("aria-label", `latent dimension ${d} (rank ${rank + 1})`);
  const out = document.createElement("output");
  input.addEventListener("input", () => { state.z[d] = Number(input.value); out.textContent = state.z[d].toFixed(2); decode(); });
  row.append(name, input, out);
  state.inputs[d] = { input, out };
  return row;
}

function setZ(z) {
  state.z = z.slice();
  state.inputs.forEach(({ input, out }, d) => { input.value = z[d]; out.textContent = z[d].toFixed(2); });
  decode();
}

function buildSliders() {
  state.meta.order.forEach((d, rank) => (rank < TOP ? $("#sliders") : $("#more-sliders")).append(sliderRow(d, rank)));
  $("#more").hidden = state.meta.dim <= TOP;
}

function showPage() {
  const n = state.meta.n_test;
  const first = state.page * PAGE;
  const gallery = $("#gallery");
  gallery.replaceChildren();
  for (let i = first; i < Math.min(n, first + PAGE); i++) {
    const img = Object.assign(document.createElement("img"), { src: `/api/test.png?i=${i}`, alt: `test image ${i}` });
    img.dataset.i = i;
    img.classList.toggle("a", i === state.a);
    img.classList.toggle("b", i === state.b);
    img.addEventListener("click", () => pick(i));
    gallery.append(img);
  }
  $("#page").textContent = `${first}-${Math.min(n, first + PAGE) - 1} of ${n}`;
}

function turn(step) {
  const pages = Math.ceil(state.meta.n_test / PAGE);
  state.page = (state.page + step + pages) % pages;
  showPage();
}

async function pick(i) {
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (mode === "b") { state.b = i; $("#imgB").src = `/api/test.png?i=${i}`; showPage(); interpolate(); return; }
  state.a = i;
  showPage();
  try {
    const post = await getJSON(`/api/encode?i=${i}`);
    $("#picked").hidden = false;
    $("#original").src = `/api/test.png?i=${i}`;
    $("#imgA").src = `/api/test.png?i=${i}`;
    if (post.label !== null && state.label !== null) { state.label = post.label; $("#class").value = post.label; drawSamples(); }
    $("#recon").src = "/api/decode.png?z=" + zParam(post.z) + labelParam();
    $("#label").textContent = post.label === null ? "" : ` (label ${post.label})`;
    drawPosterior(post);
    setZ(post.z);
    interpolate();
    status(`image ${i}: the sliders start at its posterior`);
  } catch (e) { status("error: " + e.message); }
}

function drawPosterior(post) {
  const m = state.meta;
  const dims = m.order.slice(0, 24);
  const c = $("#posterior");
  c.height = ROW * dims.length + 4;
  const g = c.getContext("2d");
  const x0 = 40, w = c.width - x0 - 8;
  g.clearRect(0, 0, c.width, c.height);
  g.font = "11px system-ui, sans-serif";
  dims.forEach((d, k) => {
    const [lo, hi] = m.ranges[d];
    const px = (v) => x0 + (w * (Math.min(hi, Math.max(lo, v)) - lo)) / (hi - lo);
    const y = 2 + ROW * k + ROW / 2;
    g.fillStyle = "#5b6475"; g.fillText("z" + d, 2, y + 4);
    g.fillStyle = "#d9dde5"; g.fillRect(x0, y - 1, w, 2);
    const mu = post.z[d], sd = post.spread ? post.spread[d] : 0;
    g.fillStyle = "rgba(47, 111, 223, 0.35)"; g.fillRect(px(mu - sd), y - 4, Math.max(1, px(mu + sd) - px(mu - sd)), 8);
    g.fillStyle = "#2f6fdf"; g.beginPath(); g.arc(px(mu), y, 3, 0, 2 * Math.PI); g.fill();
  });
}

function interpolate() {
  const ready = state.a !== null && state.b !== null;
  $("#interp-hint").hidden = ready;
  $("#tval").textContent = Number($("#t").value).toFixed(2);
  if (ready) $("#interp").src = `/api/interpolate.png?a=${state.a}&b=${state.b}&t=${$("#t").value}&kind=${$("#kind").value}${labelParam()}`;
}

function temperature() { return state.meta.temperature ? $("#temperature").value : "1"; }

function drawSamples() {
  state.seed += 1;
  $("#tempval").textContent = Number(temperature()).toFixed(2);
  $("#samples").src = `/api/samples.png?n=32&seed=${state.seed}&temperature=${temperature()}${labelParam()}`;
}

async function randomZ() {
  state.seed += 1;
  try { setZ((await getJSON(`/api/sample?seed=${state.seed}&temperature=${temperature()}${labelParam()}`)).z); }
  catch (e) { status("error: " + e.message); }
}

function wire() {
  $("#decoded").addEventListener("load", decoded);
  $("#decoded").addEventListener("error", decoded);
  $("#centre").addEventListener("click", () => setZ(state.meta.start));
  $("#random").addEventListener("click", randomZ);
  $("#prev").addEventListener("click", () => turn(-1));
  $("#next").addEventListener("click", () => turn(1));
  $("#t").addEventListener("input", interpolate);
  $("#kind").addEventListener("change", interpolate);
  $("#draw").addEventListener("click", drawSamples);
  $("#temperature").addEventListener("change", drawSamples);
  $("#temperature").disabled = !state.meta.temperature;
  for (const k of state.meta.kinds) $("#kind").append(new Option(k, k));
  if (state.meta.classes) {
    state.label = state.meta.label;
    state.meta.classes.forEach((name, i) => $("#class").append(new Option(name, i)));
    $("#class").value = state.label;
    $("#class-row").hidden = false;
    $("#class").addEventListener("change", () => { state.label = Number($("#class").value); decode(); drawSamples(); interpolate(); });
  }
}

async function main() {
  try {
    state.meta = await getJSON("/api/meta");
  } catch (e) { status("could not load the run: " + e.message); return; }
  document.title = "reparam explore: " + state.meta.title;
  $("#title").textContent = state.meta.title;
  $("#what").textContent = state.meta.what;
  buildSliders();
  wire();
  showPage();
  setZ(state.meta.start);
  drawSamples();
  interpolate();
  status(`${state.meta.dim} latent dimensions; move a slider, or pick a test image`);
}

main();
