// tryon studio: one page over the JSON API of tryon.studio.app. No external resources.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
};
const COLOURS = ["#ef8354", "#3d85c6", "#6aa84f"];
const MODE_WORDS = {
  class: "its class (the class's own query)",
  text: "a text query (CLIPSeg)",
  image: "a mask I paint on the photo",
  box: "a box x0,y0,x1,y1",
};
let config = null;
const state = { photo: null, photoImage: null, garments: [], painting: 0, page: 1, report: null };

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  let answer = {};
  try { answer = await response.json(); } catch (e) { answer = { error: `${response.status} ${response.statusText}` }; }
  if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
  return answer;
}
const showError = (box, message) => { box.textContent = message || ""; box.hidden = !message; };
const readFile = (file) => new Promise((resolve, reject) => {
  const reader = new FileReader();
  reader.onload = () => resolve({ name: file.name, data: reader.result });
  reader.onerror = () => reject(reader.error);
  reader.readAsDataURL(file);
});
const sizeText = (bytes) => `${(bytes / 1048576).toFixed(0)} MiB`;

// ---------------------------------------------------------------- tabs
function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${name}`;
  if (name === "batches") loadBatches();
  if (name === "jobs") loadJobs();
  if (name === "compare") drawVariants();
}

// ---------------------------------------------------------------- fields from the schema rows
function fieldInput(spec, value, onChange) {
  const id = `f-${spec.name}-${Math.random().toString(36).slice(2, 8)}`;
  let input;
  if (spec.type === "bool") {
    input = el("select", { id, name: spec.name },
      el("option", { value: "", text: "stack default" }), el("option", { value: "true", text: "yes" }),
      el("option", { value: "false", text: "no" }));
  } else if (spec.name === "adapter") {
    input = el("input", { id, name: spec.name, list: "adapter-list", placeholder: "none (or pick one)" });
  } else {
    const numeric = spec.type === "int" || spec.type === "float";
    const limits = spec.limits || {};
    input = el("input", {
      id, name: spec.name, type: numeric ? "number" : "text",
      min: numeric ? limits.minimum : undefined, max: numeric ? limits.maximum : undefined,
      step: spec.type === "float" ? "any" : undefined, maxlength: numeric ? undefined : limits.max_length,
      placeholder: spec.default === null || spec.default === undefined ? "" : String(spec.default),
    });
  }
  if (value !== undefined) input.value = value;
  input.title = spec.help;
  input.addEventListener("change", () => onChange && onChange(input.value));
  const wide = spec.type === "str" && !["adapter"].includes(spec.name);
  return el("div", { class: `field${wide ? " wide" : ""}` }, el("label", { for: id, text: spec.label }), input,
    el("div", { class: "help", text: spec.help }));
}

function readFields(root, specs) {
  const values = {};
  for (const spec of specs) {
    const input = root.querySelector(`[name="${spec.name}"]`);
    if (!input || input.value === "") continue;
    values[spec.name] = spec.type === "bool" ? input.value === "true" : input.value;
  }
  return values;
}

// ---------------------------------------------------------------- photo and painting
async function choosePhoto(photo) {
  state.photo = photo;
  showError($("#photo-error"), "");
  const image = new Image();
  image.onload = () => {
    state.photoImage = image;
    for (const g of state.garments) g.layer = null;
    const canvas = $("#photo-canvas");
    canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
    canvas.getContext("2d").drawImage(image, 0, 0);
    const paint = $("#paint-canvas");
    paint.width = image.naturalWidth; paint.height = image.naturalHeight;
    $("#canvas-box").hidden = false;
    drawPaint();
    $("#run").disabled = false;
    document.body.dataset.photo = photo.sample || photo.name;  // what Run will send (tests wait on it)
  };
  image.onerror = () => {
    // the server checks it with the workflow's limits and names the problem on Run
    $("#canvas-box").hidden = true; state.photoImage = null; $("#run").disabled = false;
    document.body.dataset.photo = photo.sample || photo.name;
  };
  image.src = photo.sample ? `/api/samples/${encodeURIComponent(photo.sample)}` : photo.data;
}

function layerOf(garment) {
  if (!garment.layer && state.photoImage) {
    const layer = document.createElement("canvas");
    layer.width = state.photoImage.naturalWidth; layer.height = state.photoImage.naturalHeight;
    const ctx = layer.getContext("2d"); ctx.fillStyle = "#000"; ctx.fillRect(0, 0, layer.width, layer.height);
    garment.layer = layer; garment.painted = false;
  }
  return garment.layer;
}

function drawPaint() {
  const paint = $("#paint-canvas");
  const ctx = paint.getContext("2d");
  ctx.clearRect(0, 0, paint.width, paint.height);
  state.garments.forEach((garment, index) => {
    if (!garment.layer || !garment.painted) return;
    const tint = document.createElement("canvas");
    tint.width = paint.width; tint.height = paint.height;
    const t = tint.getContext("2d");
    t.drawImage(garment.layer, 0, 0);
    t.globalCompositeOperation = "multiply"; t.fillStyle = COLOURS[index % COLOURS.length]; t.fillRect(0, 0, tint.width, tint.height);
    ctx.globalAlpha = 0.55; ctx.globalCompositeOperation = "lighter"; ctx.drawImage(tint, 0, 0);
    ctx.globalAlpha = 1; ctx.globalCompositeOperation = "source-over";
  });
  const anyImage = state.garments.some((g) => g.mode === "image");
  $("#paint-tools").hidden = !anyImage || !state.photoImage;
  $("#paint-target").textContent = `Painting the mask of garment ${state.painting + 1}`;
}

function setupPainting() {
  const paint = $("#paint-canvas");
  let drawing = false, last = null;
  const point = (event) => {
    const rect = paint.getBoundingClientRect();
    return [(event.clientX - rect.left) * paint.width / rect.width, (event.clientY - rect.top) * paint.height / rect.height];
  };
  const stroke = (from, to) => {
    const garment = state.garments[state.painting];
    if (!garment || garment.mode !== "image") return;
    const ctx = layerOf(garment).getContext("2d");
    const scale = paint.width / paint.getBoundingClientRect().width;
    ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff"; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.lineWidth = Number($("#brush").value) * scale;
    ctx.beginPath(); ctx.moveTo(from[0], from[1]); ctx.lineTo(to[0], to[1]); ctx.stroke();
    garment.painted = true;
    drawPaint();
  };
  paint.addEventListener("pointerdown", (e) => { drawing = true; last = point(e); stroke(last, last); paint.setPointerCapture(e.pointerId); });
  paint.addEventListener("pointermove", (e) => { if (!drawing) return; const p = point(e); stroke(last, p); last = p; });
  const stop = () => { drawing = false; };
  paint.addEventListener("pointerup", stop); paint.addEventListener("pointercancel", stop);
  $("#paint-clear").addEventListener("click", () => {
    const garment = state.garments[state.painting];
    if (garment) { garment.layer = null; garment.painted = false; drawPaint(); }
  });
}

// ---------------------------------------------------------------- garments
//: The class a new garment card starts with: the first of these the outfit does not wear yet.
const FIRST_CLASSES = ["upper-body", "lower-body", "footwear", "outerwear", "dress", "full-body"];
function newGarment() {
  const worn = new Set(state.garments.map((g) => g.cls));
  const cls = FIRST_CLASSES.find((c) => !worn.has(c) && config.classes.some((k) => k.name === c)) || "";
  return { cls, mode: "class", packshot: null, layer: null, painted: false, values: {} };
}

function drawGarments() {
  const box = $("#garments");
  box.replaceChildren();
  const outfit = state.garments.length > 1;
  state.garments.forEach((garment, index) => {
    const card = el("div", { class: "garment", id: `garment-${index + 1}`, style: `--colour: ${COLOURS[index % COLOURS.length]}` });
    const remove = outfit ? el("button", { type: "button", class: "remove", text: "remove", onclick: () => {
      state.garments.splice(index, 1); state.painting = 0; drawGarments(); drawPaint(); } }) : null;
    card.append(el("header", {}, el("span", { text: `Garment ${index + 1}` }), remove));
    const cls = el("select", { name: "class", title: config.class_help },
      el("option", { value: "", text: outfit ? "choose a class" : "no class (use a text query, a painted mask or a box)" }),
      ...config.classes.map((c) => el("option", { value: c.name, text: `${c.name} — ${c.about}` })));
    cls.value = garment.cls;
    cls.addEventListener("change", () => { garment.cls = cls.value; });
    const mode = el("select", { name: "mode", title: config.mode_help },
      ...config.mask_modes.map((m) => el("option", { value: m, text: MODE_WORDS[m] || m })));
    mode.value = garment.mode;
    mode.addEventListener("change", () => {
      garment.mode = mode.value;
      if (mode.value === "image") state.painting = index;
      drawGarments(); drawPaint();
    });
    const fields = el("div", { class: "fields" },
      el("div", { class: "field" }, el("label", { text: "garment class" }), cls),
      el("div", { class: "field" }, el("label", { text: "where: the mask from" }), mode));
    for (const spec of config.garment_fields) {
      if (spec.name === "query" && garment.mode !== "text") continue;
      if (spec.name === "mask_box" && garment.mode === "image") continue;
      const input = fieldInput(spec, garment.values[spec.name], (v) => { garment.values[spec.name] = v; });
      if (spec.name === "negative_queries" && (garment.mode === "image" || garment.mode === "box")) {
        input.querySelector("input").placeholder = "none: the mask is taken as drawn";
      }
      fields.append(input);
    }
    if (garment.mode === "image") {
      const paintHere = el("button", { type: "button", class: "paint-here", text: "Paint this garment's mask on the photo",
        onclick: () => { state.painting = index; drawPaint(); } });
      fields.append(el("div", { class: "field wide" }, paintHere));
    }
    const packshot = el("input", { type: "file", name: "packshot", accept: "image/*" });
    packshot.addEventListener("change", async () => {
      garment.packshot = packshot.files.length ? await readFile(packshot.files[0]) : null;
    });
    fields.append(el("div", { class: "field wide" }, el("label", { text: "packshot (optional; needs an IP-Adapter)" }), packshot,
      garment.packshot ? el("div", { class: "help", text: `chosen: ${garment.packshot.name}` }) : null));
    card.append(fields);
    box.append(card);
  });
  $("#add-garment").hidden = state.garments.length >= config.max_garments;
}

function garmentPayload(garment) {
  const values = readFields($(`#garment-${state.garments.indexOf(garment) + 1}`), config.garment_fields);
  const payload = { class: garment.cls, mode: garment.mode, ...values };
  if (garment.mode === "image" && garment.layer && garment.painted) payload.mask = { name: "mask.png", data: garment.layer.toDataURL("image/png") };
  if (garment.packshot) payload.packshot = garment.packshot;
  return payload;
}

function jobPayload() {
  return {
    photo: state.photo,
    garments: state.garments.map(garmentPayload),
    job: readFields($("#job-fields"), config.job_fields),
  };
}

// ---------------------------------------------------------------- run
function line(text, cls) { $("#states").append(el("li", { class: cls, text })); }

async function run() {
  showError($("#run-error"), "");
  if (!state.photo) { showError($("#run-error"), "photo: pick a sample or upload a photo first"); return; }
  $("#states").replaceChildren(); for (const id of ["#mask", "#results", "#preview", "#timings", "#cost"]) $(id).replaceChildren();
  $("#run").disabled = true; $("#run-status").textContent = "starting…";
  try {
    const started = await api("/api/runs", jobPayload());
    await follow(started.id);
  } catch (error) {
    showError($("#run-error"), error.message);
    $("#run-status").textContent = "";
  } finally {
    $("#run").disabled = false;
  }
}

async function follow(id) {
  let shown = 0;
  for (;;) {
    const view = await api(`/api/runs/${id}`);
    for (const text of view.lines.slice(shown)) line(text, text.startsWith("  !!") ? "error-line" : (text.startsWith("  <-") ? "done" : ""));
    shown = view.lines.length;
    $("#run-status").textContent = view.status === "running" ? "running…" : view.status;
    if (view.status === "succeeded" || view.status === "failed") { showOutcome(view); return; }
    await new Promise((r) => setTimeout(r, 400));
  }
}

function fileUrl(id, name) { return `/api/runs/${id}/files/${encodeURIComponent(name)}`; }

function table(target, entries) {
  target.replaceChildren(...entries.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: typeof v === "object" ? JSON.stringify(v) : String(v) }))));
}

function flatten(value, prefix = "") {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [[prefix, value === null ? "—" : value]];
  return Object.entries(value).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k));
}

function showOutcome(view) {
  $("#run-status").textContent = view.status === "succeeded" ? `succeeded: ${view.outcome}` : "failed";
  $("#run-status").className = `status status-${view.status}`;
  if (view.error) showError($("#run-error"), view.error);
  const files = view.files;
  const masks = files.filter((f) => /^mask.*\.png$/.test(f));
  const upscaled = files.filter((f) => /^upscaled-.*\.png$/.test(f));
  const results = upscaled.length ? upscaled : files.filter((f) => /^inpainted-.*\.png$/.test(f));
  $("#mask").append(...masks.map((f) => el("img", { src: fileUrl(view.id, f), alt: f, title: f })));
  $("#results").append(...results.map((f) => el("a", { href: fileUrl(view.id, f), target: "_blank" }, el("img", { src: fileUrl(view.id, f), alt: f, title: f }))));
  if (files.includes("preview.jpg")) $("#preview").append(el("img", { src: fileUrl(view.id, "preview.jpg"), alt: "preview" }));
  const manifest = view.manifest || {};
  const timings = manifest.timings_ms || {};
  table($("#timings"), Object.entries(timings).map(([step, t]) => {
    const ms = t && typeof t === "object" ? t.elapsed_ms : t;
    return [step, typeof ms === "number" ? `${(ms / 1000).toFixed(2)} s` : JSON.stringify(t)];
  }));
  table($("#cost"), flatten(manifest.cost || {}));
}

// ---------------------------------------------------------------- compare
function drawVariants() {
  const head = $("#variants thead"), body = $("#variants tbody");
  if (!head.children.length) head.append(el("tr", {}, el("th", { text: "#" }), ...config.varied.map((s) => el("th", { text: s.label, title: s.help }))));
  while (body.children.length < 2) addVariant();
}
function addVariant() {
  const body = $("#variants tbody");
  if (body.children.length >= 4) return;
  const row = el("tr", { class: "variant" }, el("td", { text: String(body.children.length + 1) }));
  for (const spec of config.varied) {
    const cell = fieldInput(spec, undefined, null);
    cell.querySelector(".help").remove(); cell.querySelector("label").remove();
    row.append(el("td", {}, cell));
  }
  body.append(row);
  $("#add-variant").hidden = body.children.length >= 4;
}

async function compare() {
  showError($("#compare-error"), "");
  if (!state.photo) { showError($("#compare-error"), "photo: pick a sample or upload a photo on Try on first"); return; }
  const variants = [...document.querySelectorAll("#variants tbody tr")].map((row) => readFields(row, config.varied));
  const base = jobPayload();
  base.garments = base.garments.slice(0, 1);
  $("#compare-grid").replaceChildren();
  $("#compare-run").disabled = true; $("#compare-status").textContent = "starting the batch…";
  try {
    const started = await api("/api/compare", { ...base, variants });
    const ended = await followBatch(started.batch, $("#compare-status"));
    if (ended.report) {
      const report = await api(`/api/reports/${ended.report}?size=100`);
      const grid = $("#compare-grid");
      report.rows.forEach((row, i) => {
        const caption = Object.entries(variants[i] || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "stack defaults";
        const image = (row.results || [])[0];
        grid.append(el("figure", { class: `variant-result status-${row.status}` },
          image ? el("img", { src: `/api/object?uri=${encodeURIComponent(image)}`, alt: caption }) : el("div", { class: "error", text: row.cause || row.error || row.status }),
          el("figcaption", { text: `${i + 1}: ${caption} (${row.status})` })));
      });
    }
    if (ended.error) showError($("#compare-error"), ended.error);
  } catch (error) {
    showError($("#compare-error"), error.message); $("#compare-status").textContent = "";
  } finally { $("#compare-run").disabled = false; }
}

async function followBatch(handle, status) {
  for (;;) {
    const view = await api(`/api/batch-runs/${handle}`);
    const counts = view.counts ? ` (${view.counts.done} done, ${view.counts.failed} failed, ${view.counts.running} running of ${view.counts.total})` : "";
    status.textContent = `batch ${view.status.toLowerCase()}${counts}`;
    if (view.status !== "RUNNING") return view;
    await new Promise((r) => setTimeout(r, 700));
  }
}

// ---------------------------------------------------------------- batches
async function loadBatches() {
  const body = $("#batch-list tbody");
  showError($("#batch-error"), "");
  try {
    const answer = await api("/api/batches");
    body.replaceChildren(...answer.batches.map((b) => el("tr", { class: "clickable", "data-batch": b.batch_id, onclick: () => openReport(b.batch_id, 1) },
      el("td", { text: b.batch_id }), el("td", { class: `status-${b.status}`, text: b.status }),
      el("td", { text: Object.entries(b.counts || {}).map(([k, v]) => `${k} ${v}`).join(", ") }), el("td", { text: b.written }))));
    if (!answer.batches.length) body.append(el("tr", {}, el("td", { colspan: 4, text: "no batch reports yet" })));
  } catch (error) { showError($("#batch-error"), error.message); }
}

async function openReport(batch, page) {
  const report = await api(`/api/reports/${encodeURIComponent(batch)}?page=${page}`);
  state.report = batch; state.page = report.page;
  $("#report").hidden = false;
  $("#report-title").textContent = `Batch ${report.batch_id}: ${report.status}`;
  $("#report-counts").textContent = Object.entries(report.counts || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  $("#report-csv").href = `/api/reports/${encodeURIComponent(batch)}/files/report.csv`;
  $("#contact-sheets").replaceChildren(...(report.contact_sheets || []).map((uri) => el("a", { href: `/api/object?uri=${encodeURIComponent(uri)}`, target: "_blank" },
    el("img", { src: `/api/object?uri=${encodeURIComponent(uri)}`, alt: "contact sheet", class: "contact-sheet" }))));
  $("#report-rows tbody").replaceChildren(...report.rows.map((row) => {
    const thumb = row.preview || (row.results || [])[0];
    return el("tr", { class: `row status-${row.status}` }, el("td", { text: String(row.row) }), el("td", { class: `status-${row.status}`, text: row.status }),
      el("td", {}, thumb ? el("img", { src: `/api/object?uri=${encodeURIComponent(thumb)}`, alt: `row ${row.row}` }) : null),
      el("td", { text: row.adapter || "" }), el("td", { text: row.prompt || "" }),
      el("td", { class: "failure", text: [row.error, row.cause].filter(Boolean).join(": ") }));
  }));
  $("#page-info").textContent = `page ${report.page} of ${report.pages} (${report.total_rows} rows)`;
  $("#page-prev").disabled = report.page <= 1; $("#page-next").disabled = report.page >= report.pages;
}

async function startBatch() {
  const input = $("#manifest-file");
  showError($("#batch-error"), "");
  if (!input.files.length) return;
  try {
    const manifest = await readFile(input.files[0]);
    const started = await api("/api/batches", { manifest, allow_invalid_rows: $("#allow-invalid").checked });
    const ended = await followBatch(started.batch, $("#batch-status"));
    if (ended.error) showError($("#batch-error"), ended.error);
    await loadBatches();
    if (ended.report) await openReport(ended.report, 1);
  } catch (error) { showError($("#batch-error"), error.message); }
  input.value = "";
}

// ---------------------------------------------------------------- jobs
async function loadJobs() {
  const body = $("#jobs-table tbody");
  const answer = await api("/api/jobs");
  body.replaceChildren(...answer.jobs.map((job) => el("tr", { class: "job" },
    el("td", { text: job.name, title: job.arn }), el("td", { class: `status-${job.status}`, text: job.status }),
    el("td", { text: job.started }), el("td", { text: job.duration_s === null ? "running" : `${job.duration_s} s` }),
    el("td", { text: job.outcome || "" }),
    el("td", {}, job.preview ? el("a", { href: `/api/object?uri=${encodeURIComponent(job.preview)}`, target: "_blank", text: "preview" }) : null,
      job.manifest ? document.createTextNode(" · ") : null,
      job.manifest ? el("a", { href: `/api/object?uri=${encodeURIComponent(job.manifest)}`, target: "_blank", text: "manifest" }) : null))));
  if (!answer.jobs.length) body.append(el("tr", {}, el("td", { colspan: 6, text: "no executions yet" })));
}

// ---------------------------------------------------------------- start
async function start() {
  config = await api("/api/config");
  $("#backend").textContent = config.backend;
  $("#max-upload").textContent = sizeText(config.max_upload_bytes);
  document.body.append(el("datalist", { id: "adapter-list" }, ...config.adapters.map((a) => el("option", { value: a }))));
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  $("#samples").append(...config.samples.map((name) => el("button", { type: "button", class: "sample", title: `sample photo ${name}`, "data-sample": name,
    onclick: (e) => { for (const b of document.querySelectorAll(".samples button")) b.classList.remove("chosen"); e.currentTarget.classList.add("chosen"); choosePhoto({ sample: name }); } },
    el("img", { src: `/api/samples/${encodeURIComponent(name)}`, alt: name }))));
  $("#photo-file").addEventListener("change", async (e) => {
    if (!e.target.files.length) return;
    $("#run").disabled = true;  // until the new photo is read: Run never sends the previous one
    delete document.body.dataset.photo;
    choosePhoto(await readFile(e.target.files[0]));
  });
  state.garments = [];
  state.garments.push(newGarment());
  drawGarments();
  $("#add-garment").addEventListener("click", () => { state.garments.push(newGarment()); drawGarments(); });
  const jobFields = $("#job-fields");
  for (const spec of config.job_fields) jobFields.append(fieldInput(spec, undefined, null));
  setupPainting();
  $("#run").addEventListener("click", run);
  $("#run").disabled = false;
  $("#add-variant").addEventListener("click", addVariant);
  $("#compare-run").addEventListener("click", compare);
  $("#batches-refresh").addEventListener("click", loadBatches);
  $("#manifest-file").addEventListener("change", startBatch);
  $("#page-prev").addEventListener("click", () => openReport(state.report, state.page - 1));
  $("#page-next").addEventListener("click", () => openReport(state.report, state.page + 1));
  $("#jobs-refresh").addEventListener("click", loadJobs);
  const firstSample = document.querySelector("#samples button");
  if (firstSample) firstSample.click();  // a photo to start with: Run works at once
  document.body.dataset.ready = "true";
}
start().catch((error) => { $("#backend").textContent = `error: ${error.message}`; });
