// The page of `es serve`: see the DOM contract at the top of index.html.
// Everything stored is written with textContent, never as HTML.
"use strict";

const TAIL_MAX = 200;
const TAIL_BACK = 20;

const state = { selected: null, refresh: null, refreshEvents: false };

const byId = (id) => document.getElementById(id);

/// GET `url` as JSON; a problem document (or a network failure) is thrown.
async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) {
    throw body;
  }
  return body;
}

function showProblem(problem) {
  const element = byId("problem");
  element.hidden = false;
  if (problem && typeof problem === "object" && "title" in problem) {
    element.dataset.status = String(problem.status);
    element.textContent = `${problem.title}: ${problem.detail}`;
  } else {
    delete element.dataset.status;
    element.textContent = String(problem);
  }
}

function clearProblem() {
  byId("problem").hidden = true;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

function micros(us) {
  if (us < 1000) return `${us} µs`;
  if (us < 1e6) return `${Math.floor(us / 1000)} ms`;
  if (us < 6e7) return `${(us / 1e6).toFixed(1)} s`;
  if (us < 3.6e9) return `${(us / 6e7).toFixed(1)} min`;
  if (us < 8.64e10) return `${(us / 3.6e9).toFixed(1)} h`;
  return `${(us / 8.64e10).toFixed(1)} d`;
}

async function loadStore() {
  const store = await getJson("/api/store");
  const element = byId("store");
  element.dataset.head = String(store.head);
  element.textContent = `${store.file}: ${store.head} events`;
  return store;
}

async function loadStreams() {
  const streams = await getJson("/api/streams");
  const table = byId("streams");
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const stream of streams) {
    const tr = row([stream.stream, stream.aggregate_type, String(stream.events), stream.last_recorded_at]);
    tr.dataset.stream = stream.stream;
    tr.dataset.events = String(stream.events);
    tr.dataset.type = stream.aggregate_type;
    tr.tabIndex = 0;
    if (stream.stream === state.selected) {
      tr.setAttribute("aria-selected", "true");
    }
    tr.addEventListener("click", () => selectStream(stream.stream));
    tr.addEventListener("keydown", (event) => {
      if (event.key === "Enter") selectStream(stream.stream);
    });
    body.append(tr);
  }
  table.dataset.count = String(streams.length);
}

async function selectStream(stream) {
  state.selected = stream;
  for (const tr of byId("streams").tBodies[0].rows) {
    if (tr.dataset.stream === stream) {
      tr.setAttribute("aria-selected", "true");
    } else {
      tr.removeAttribute("aria-selected");
    }
  }
  await loadEvents(stream);
}

async function loadEvents(stream) {
  let events;
  try {
    events = await getJson(`/api/streams/${encodeURIComponent(stream)}/events`);
  } catch (problem) {
    showProblem(problem);
    return;
  }
  if (state.selected !== stream) return; // another stream was chosen meanwhile
  const table = byId("events");
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const event of events) {
    const actor = event.metadata && event.metadata.actor ? event.metadata.actor : "";
    const tr = row([
      String(event.version),
      String(event.position),
      `${event.name}@v${event.schema_version}`,
      event.recorded_at,
      actor,
      "",
    ]);
    const code = document.createElement("code");
    code.textContent = JSON.stringify(event.payload);
    tr.lastChild.append(code);
    tr.dataset.version = String(event.version);
    tr.dataset.position = String(event.position);
    tr.dataset.name = event.name;
    body.append(tr);
  }
  table.dataset.stream = stream;
  table.dataset.count = String(events.length);
  byId("events-of").textContent = `of ${stream}`;
}

async function loadProjections() {
  const projections = await getJson("/api/projections");
  const table = byId("projections");
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const p of projections) {
    let version = p.version === null ? "-" : String(p.version);
    if (p.generation) version += ` (generation ${p.generation})`;
    let lag = String(p.lag_events);
    if (p.lag_events > 0 && p.lag_micros !== null) lag += ` (${micros(p.lag_micros)})`;
    let serving = p.serving === null ? "-" : p.serving ? "yes" : "no";
    if (p.rebuild_for !== null) serving += ", rebuild pending";
    const tr = row([p.name, p.kind, version, String(p.position), String(p.head), lag, String(p.parked), serving]);
    tr.dataset.name = p.name;
    tr.dataset.kind = p.kind;
    tr.dataset.lag = String(p.lag_events);
    if (p.serving !== null) tr.dataset.serving = String(p.serving);
    if (p.lag_events > 0) tr.classList.add("behind");
    body.append(tr);
  }
  table.dataset.count = String(projections.length);
}

/// Reads the streams, the projections and (when `stream` is the selected
/// one) its events again, once the tail has been quiet for a moment.
function refreshSoon(stream) {
  if (stream === state.selected) state.refreshEvents = true;
  clearTimeout(state.refresh);
  state.refresh = setTimeout(async () => {
    try {
      await Promise.all([loadStore(), loadStreams(), loadProjections()]);
      if (state.refreshEvents && state.selected) {
        state.refreshEvents = false;
        await loadEvents(state.selected);
      }
    } catch (problem) {
      showProblem(problem);
    }
  }, 300);
}

function setTailState(value) {
  const element = byId("tail-state");
  element.dataset.state = value;
  element.textContent = value;
}

function startTail(head) {
  const from = Math.max(1, head - TAIL_BACK + 1);
  const source = new EventSource(`/api/tail?from=${from}`);
  source.onopen = () => setTailState("live");
  source.onerror = () => setTailState("reconnecting");
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const list = byId("tail");
    const item = document.createElement("li");
    item.dataset.position = String(event.position);
    item.dataset.stream = event.stream;
    item.dataset.name = event.name;
    item.textContent = `#${event.position} ${event.stream} v${event.version} ${event.name} (${event.recorded_at})`;
    list.append(item);
    while (list.children.length > TAIL_MAX) {
      list.firstElementChild.remove();
    }
    if (event.position > head) refreshSoon(event.stream);
  };
  source.addEventListener("problem", (message) => {
    showProblem(JSON.parse(message.data));
    source.close();
    setTailState("reconnecting");
  });
}

async function start() {
  try {
    const [store] = await Promise.all([loadStore(), loadStreams(), loadProjections()]);
    clearProblem();
    document.body.dataset.ready = "true";
    startTail(store.head);
  } catch (problem) {
    showProblem(problem);
  }
  setInterval(() => loadProjections().catch(showProblem), 2000);
}

start();
