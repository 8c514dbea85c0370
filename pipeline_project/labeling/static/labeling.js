// The labeling page: one item at a time (or a batch), the model's guess pre-selected, every action on a key.
// Labels are saved on the server as they are given; the undo history is kept in this browser per queue, so
// it survives a reload.
"use strict";

const state = {
  queues: [],
  name: null,
  view: null,
  current: null,
  part: 0,
  skipped: new Set(),
  batch: false,
  focus: 0,
  selected: new Set(),
};
const BATCH_SIZE = 12;
const $ = (id) => document.getElementById(id);
const batchAudio = new Audio();
let pending = Promise.resolve();

// Actions run one after another, in the order their keys were pressed.
function enqueue(action) {
  pending = pending.then(action).catch((error) => flash(error.message));
  return pending;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

const writeHeaders = { "Content-Type": "application/json", "X-Labeling": "1" };
const labelUrl = (id) => `/api/queues/${encodeURIComponent(state.name)}/labels/${encodeURIComponent(id)}`;
const audioUrl = (id, part) =>
  `/api/queues/${encodeURIComponent(state.name)}/audio/${encodeURIComponent(id)}/${part}.wav`;

const undoKey = () => `labeling-undo:${state.name}`;
function undoStack() {
  return JSON.parse(localStorage.getItem(undoKey()) || "[]");
}
function saveUndoStack(stack) {
  localStorage.setItem(undoKey(), JSON.stringify(stack.slice(-1000)));
}

function flash(message) {
  const note = $("note");
  note.textContent = message;
  note.hidden = !message;
}

async function loadQueues() {
  const body = await api("/api/queues");
  state.queues = body.queues;
  const wanted = new URLSearchParams(location.hash.slice(1)).get("queue");
  const first = state.queues.find((q) => q.name === wanted) || state.queues[0];
  if (first) {
    await openQueue(first.name);
  } else {
    renderNav();
    $("single").innerHTML =
      '<p class="empty">Nothing to label yet: build the queues first (make run, then the review_queue and genre_queue assets).</p>';
  }
}

async function openQueue(name) {
  state.name = name;
  state.skipped = new Set();
  state.selected = new Set();
  state.focus = 0;
  window.history.replaceState(null, "", `#queue=${encodeURIComponent(name)}`);
  state.view = await api(`/api/queues/${encodeURIComponent(name)}`);
  state.current = nextUnlabelled(null);
  state.part = 0;
  render();
}

const items = () => state.view.items;
const byId = (id) => items().find((item) => item.id === id);
const classKey = (name) => (state.view.classes.find((c) => c.name === name) || {}).key;

function nextUnlabelled(afterId) {
  const list = items();
  const start = afterId === null ? 0 : list.findIndex((item) => item.id === afterId) + 1;
  for (let pass = 0; pass < 2; pass++) {
    for (let k = 0; k < list.length; k++) {
      const item = list[(start + k) % list.length];
      if (!item.label && !state.skipped.has(item.id)) return item.id;
    }
    state.skipped.clear(); // only skipped items are left: go round them again
  }
  return null;
}

function batchRows() {
  return items()
    .filter((item) => !item.label && !state.skipped.has(item.id))
    .slice(0, BATCH_SIZE);
}

// ---- rendering ----

function renderNav() {
  const nav = $("queues");
  nav.replaceChildren(
    ...state.queues.map((queue) => {
      const button = document.createElement("button");
      button.textContent = queue.title;
      button.dataset.queue = queue.name;
      button.className = queue.name === state.name ? "active" : "";
      button.onclick = () => enqueue(() => openQueue(queue.name));
      return button;
    }),
  );
}

function renderProgress() {
  const p = state.view.progress;
  const agreement = p.agreement === null ? "–" : `${Math.round(p.agreement * 100)}%`;
  $("progress-text").textContent = `done ${p.done} · left ${p.left} · agreement with the model ${agreement}`;
  $("progress-fill").style.width = p.total ? `${(100 * p.done) / p.total}%` : "0";
}

function renderSingle() {
  const item = state.current === null ? null : byId(state.current);
  const section = $("single");
  section.classList.toggle("finished", !item);
  if (!item) {
    $("item-position").textContent = "";
    $("item-id").textContent = "";
    $("item-state").textContent = items().length ? "Every item is labelled. Thank you!" : "This queue is empty.";
    $("guess").hidden = true;
    $("context").replaceChildren();
    $("players").replaceChildren();
    $("classes").replaceChildren();
    return;
  }
  const list = items();
  $("item-position").textContent = `item ${list.indexOf(item) + 1} of ${list.length}`;
  $("item-id").textContent = item.id;
  $("item-state").textContent = item.label ? `labelled ${item.label}` : "not labelled";
  $("item-state").className = item.label ? "labelled" : "";
  $("guess").hidden = false;
  $("guess-class").textContent = item.guess;
  $("guess-confidence").textContent = `confidence ${Number(item.confidence).toFixed(2)}`;
  $("guess-version").textContent = item.model_version ? `(version ${item.model_version})` : "";
  $("context").replaceChildren(
    ...Object.entries(item.context || {}).flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value;
      return [dt, dd];
    }),
  );
  $("players").replaceChildren(
    ...state.view.parts.map((part, index) => {
      const box = document.createElement("div");
      box.className = "player" + (index === state.part ? " current" : "");
      const caption = document.createElement("span");
      caption.textContent = part === "mix" ? "mix" : `${part} stem`;
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = audioUrl(item.id, part);
      audio.dataset.part = part;
      box.append(caption, audio);
      return box;
    }),
  );
  $("classes").replaceChildren(
    ...state.view.classes.map((cls) => {
      const button = document.createElement("button");
      button.innerHTML = `<kbd></kbd> <span></span>`;
      button.querySelector("kbd").textContent = cls.key || "";
      button.querySelector("span").textContent = cls.name;
      button.dataset.class = cls.name;
      button.className = [cls.name === item.guess ? "guess" : "", cls.name === item.label ? "chosen" : ""].join(" ");
      button.onclick = () => enqueue(() => labelItems([item.id], cls.name));
      return button;
    }),
  );
}

function renderBatch() {
  $("batch").hidden = !state.batch;
  if (!state.batch) return;
  const rows = batchRows();
  state.focus = Math.min(state.focus, Math.max(0, rows.length - 1));
  $("batch-rows").replaceChildren(
    ...rows.map((item, index) => {
      const row = document.createElement("tr");
      row.className = index === state.focus ? "focus" : "";
      row.dataset.item = item.id;
      const cells = [
        state.selected.has(item.id) ? "☑" : "☐",
        item.id,
        item.guess,
        Number(item.confidence).toFixed(2),
        item.label || "",
      ];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }),
  );
  if (!rows.length) $("batch-rows").innerHTML = '<tr><td colspan="5" class="empty">Nothing left to label.</td></tr>';
}

function renderHelp() {
  const keys = [
    ...state.view.classes.map((c) => [c.key, `label ${c.name}`]),
    ["Enter", "accept the model's guess"],
    ["Space", "play or pause"],
    [".", "switch between the mix and the stem"],
    ["s", "skip"],
    ["z", "undo the last label"],
    ["b", "batch mode"],
    ["?", "this help"],
  ];
  $("help-keys").replaceChildren(
    ...keys.map(([key, what]) => {
      const li = document.createElement("li");
      li.innerHTML = "<kbd></kbd> ";
      li.querySelector("kbd").textContent = key;
      li.append(what);
      return li;
    }),
  );
}

function render() {
  renderNav();
  renderProgress();
  flash(state.view.note || "");
  renderSingle();
  renderBatch();
  renderHelp();
}

// ---- actions ----

async function labelItems(ids, name) {
  for (const id of ids) {
    const body = await api(labelUrl(id), { method: "PUT", headers: writeHeaders, body: JSON.stringify({ label: name }) });
    byId(id).label = name;
    state.view.progress = body.progress;
    saveUndoStack([...undoStack(), id]);
  }
  state.selected.clear();
  if (!state.batch || ids.includes(state.current)) state.current = nextUnlabelled(ids[ids.length - 1]);
  state.part = 0;
  render();
}

async function undo() {
  const stack = undoStack();
  const id = stack.pop();
  if (id === undefined) {
    flash("Nothing to undo.");
    return;
  }
  const body = await api(labelUrl(id), { method: "DELETE", headers: writeHeaders });
  saveUndoStack(stack);
  const item = byId(id);
  if (item) item.label = null;
  state.view.progress = body.progress;
  state.current = item ? id : state.current;
  state.skipped.delete(id);
  render();
}

function skip() {
  if (state.current === null) return;
  state.skipped.add(state.current);
  state.current = nextUnlabelled(state.current);
  state.part = 0;
  render();
}

function togglePlay() {
  if (state.batch) {
    const row = batchRows()[state.focus];
    if (!row) return;
    const src = audioUrl(row.id, "mix");
    if (!batchAudio.src.endsWith(src) || batchAudio.paused) {
      if (!batchAudio.src.endsWith(src)) batchAudio.src = src;
      batchAudio.play();
    } else {
      batchAudio.pause();
    }
    return;
  }
  const audio = document.querySelector(`#players audio[data-part="${state.view.parts[state.part]}"]`);
  if (!audio) return;
  document.querySelectorAll("#players audio").forEach((other) => other !== audio && other.pause());
  if (audio.paused) audio.play();
  else audio.pause();
}

function targets() {
  if (!state.batch) return state.current === null ? [] : [state.current];
  if (state.selected.size) return [...state.selected];
  const row = batchRows()[state.focus];
  return row ? [row.id] : [];
}

document.addEventListener("keydown", (event) => {
  if (!state.view || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target instanceof HTMLInputElement) return;
  const key = event.key;
  const cls = state.view.classes.find((c) => c.key === key.toLowerCase());
  if (cls && key.length === 1) {
    const ids = targets();
    if (ids.length) enqueue(() => labelItems(ids, cls.name));
  } else if (key === "Enter") {
    event.preventDefault();
    // Each item takes its own guess.
    for (const id of targets()) enqueue(() => labelItems([id], byId(id).guess));
  } else if (key === " ") {
    event.preventDefault();
    togglePlay();
  } else if (key === ".") {
    state.part = (state.part + 1) % state.view.parts.length;
    renderSingle();
  } else if (key === "s") {
    enqueue(skip);
  } else if (key === "z" || key === "Backspace") {
    event.preventDefault();
    enqueue(undo);
  } else if (key === "b") {
    state.batch = !state.batch;
    state.selected.clear();
    renderBatch();
  } else if (key === "?") {
    $("help").open = !$("help").open;
  } else if (state.batch && (key === "ArrowDown" || key === "ArrowUp")) {
    event.preventDefault();
    const rows = batchRows().length;
    state.focus = Math.max(0, Math.min(rows - 1, state.focus + (key === "ArrowDown" ? 1 : -1)));
    renderBatch();
  } else if (state.batch && key === "x") {
    const row = batchRows()[state.focus];
    if (row) state.selected.has(row.id) ? state.selected.delete(row.id) : state.selected.add(row.id);
    renderBatch();
  } else if (state.batch && key === "a") {
    const rows = batchRows();
    const all = rows.every((row) => state.selected.has(row.id));
    rows.forEach((row) => (all ? state.selected.delete(row.id) : state.selected.add(row.id)));
    renderBatch();
  }
});

$("accept").onclick = () => {
  for (const id of targets()) enqueue(() => labelItems([id], byId(id).guess));
};
$("skip").onclick = () => enqueue(skip);
$("undo").onclick = () => enqueue(undo);
$("batch-toggle").onclick = () => {
  state.batch = !state.batch;
  state.selected.clear();
  renderBatch();
};

enqueue(loadQueues);
