// The Ticket service's page. No framework, no build step: fetch the JSON
// API, render, and follow the live feed (server-sent events).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

const view = {
  id: null,        // the ticket shown
  last: 0,         // its last version
  shown: 0,        // the version the slider shows
  history: [],     // its events
};

document.body.dataset.loadedAt = String(Date.now());

/// Fetches JSON; a problem document becomes an Error with its detail.
async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const error = new Error(body && body.detail ? body.detail : response.statusText);
    error.status = response.status;
    error.problem = body;
    throw error;
  }
  return body;
}

function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

// ---- the list --------------------------------------------------------

async function loadList() {
  const status = $("#status-filter").value;
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  let list;
  try {
    list = await api(`/api/tickets${query}`);
  } catch (error) {
    if (error.status === 503) return setTimeout(loadList, 500); // still being built
    throw error;
  }
  const body = $("#tickets tbody");
  body.replaceChildren(...list.tickets.map((t) => {
    const row = document.createElement("tr");
    row.dataset.id = t.id;
    row.dataset.status = t.status;
    row.dataset.version = String(t.version);
    if (t.id === view.id) row.classList.add("selected");
    row.append(
      text("td", t.id, "mono"),
      text("td", t.title),
      text("td", t.escalated ? `${t.status}, escalated` : t.status),
      text("td", String(t.messages)),
      text("td", String(t.version)),
    );
    row.addEventListener("click", () => { location.hash = `#/tickets/${encodeURIComponent(t.id)}`; });
    return row;
  }));
  $("#list-empty").hidden = list.tickets.length > 0;
}

// ---- one ticket ------------------------------------------------------

function routeTicket() {
  const match = location.hash.match(/^#\/tickets\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

async function showTicket(id) {
  view.id = id;
  const pane = $("#ticket");
  if (!id) {
    pane.hidden = true;
    delete pane.dataset.id;
    return;
  }
  pane.dataset.id = id;
  pane.hidden = false;
  hideError();
  await loadHistory(true);
  for (const row of document.querySelectorAll("#tickets tr[data-id]")) {
    row.classList.toggle("selected", row.dataset.id === id);
  }
}

/// Loads the ticket's history; follows the current version when the
/// slider was on it (or `toLast`).
async function loadHistory(toLast) {
  const id = view.id;
  let history;
  try {
    history = await api(`/api/tickets/${encodeURIComponent(id)}/history`);
  } catch (error) {
    if (error.status === 404) {
      $("#ticket-title").textContent = "(no such ticket)";
      $("#timeline").replaceChildren();
      return;
    }
    throw error;
  }
  if (id !== view.id) return; // another ticket was chosen meanwhile
  const wasOnLast = view.shown === view.last;
  view.history = history.events;
  view.last = history.version;
  $("#ticket-id").textContent = id;
  const slider = $("#version-slider");
  slider.max = String(view.last);
  slider.disabled = view.last <= 1;
  // Nothing shown yet (another load is on its way): the current version.
  const follow = toLast || wasOnLast || view.shown < 1;
  await showVersion(follow ? view.last : Math.min(view.shown, view.last));
}

/// Shows the state at `version` (the server folds the events up to it),
/// and marks the events after it in the timeline.
async function showVersion(version) {
  const id = view.id;
  const query = version === view.last ? "" : `?version=${version}`;
  const state = await api(`/api/tickets/${encodeURIComponent(id)}${query}`);
  if (id !== view.id) return;
  view.shown = version;
  const slider = $("#version-slider");
  slider.value = String(version);
  $("#version-label").textContent =
    version === view.last ? `v${version} (now)` : `v${version} of ${view.last}`;
  $("#to-now").hidden = version === view.last;
  $("#ticket-title").textContent = state.title;
  const dl = $("#state");
  dl.dataset.version = String(state.version);
  const field = (name, value) => { $(`[data-field=${name}]`, dl).textContent = value; };
  field("status", state.status);
  field("escalated", state.escalated ? "yes" : "no");
  field("messages", String(state.messages));
  field("waiting", state.customer_waiting ? "the customer waits for an answer" : "no");
  renderTimeline();
}

function renderTimeline() {
  const items = view.history.map((e) => {
    const item = document.createElement("li");
    item.dataset.version = String(e.version);
    item.dataset.name = e.name;
    if (e.version > view.shown) item.classList.add("future");
    if (e.corrected_by.length > 0 && !e.stands) item.classList.add("corrected");
    if (e.corrects !== null) item.classList.add("correction");
    const head = document.createElement("div");
    head.className = "head";
    head.append(
      text("span", `v${e.version}`, "version"),
      text("span", e.name, "name"),
      text("span", e.actor || "-", "actor"),
      text("time", new Date(e.recorded_at).toLocaleString()),
    );
    item.append(head, text("div", e.summary, "what"));
    if (e.reason) item.append(text("div", `why: ${e.reason}`, "why"));
    const marks = [];
    if (e.corrects !== null) marks.push(`corrects v${e.corrects}`);
    if (e.corrected_by.length > 0) {
      marks.push(`corrected by ${e.corrected_by.map((v) => `v${v}`).join(", ")}${e.stands ? ", undone" : ""}`);
    }
    if (marks.length) item.append(text("div", marks.join("; "), "marks"));
    item.addEventListener("click", () => showVersion(e.version));
    return item;
  });
  $("#timeline").replaceChildren(...items);
}

// ---- commands --------------------------------------------------------

function showError(message) {
  const error = $("#error");
  error.textContent = message;
  error.hidden = false;
}

function hideError() {
  $("#error").hidden = true;
}

/// Sends a command decided on the version shown as current (`If-Match`),
/// with a new idempotency key; a refusal is shown, a stale version reloads.
async function send(path, body, { ifMatch = true } = {}) {
  hideError();
  const headers = {
    "Content-Type": "application/json",
    "Idempotency-Key": crypto.randomUUID(),
  };
  if (ifMatch && view.last > 0) headers["If-Match"] = `"${view.last}"`;
  try {
    return await api(path, { method: "POST", headers, body: JSON.stringify(body) });
  } catch (error) {
    if (error.status === 412) {
      showError(`${error.message} (reloaded: look again, then decide)`);
      await loadHistory(true);
    } else {
      showError(error.message);
    }
    return null;
  }
}

function fields(form) {
  return Object.fromEntries(new FormData(form).entries());
}

function onSubmit(selector, handler) {
  $(selector).addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const done = await handler(fields(form));
    if (done) {
      for (const input of form.querySelectorAll("input:not([name=by])")) input.value = "";
    }
  });
}

const ticketPath = (what) => `/api/tickets/${encodeURIComponent(view.id)}/${what}`;

onSubmit("#open-form", async ({ title, email }) => {
  hideError();
  const done = await send("/api/tickets", { title, email }, { ifMatch: false });
  if (done) location.hash = `#/tickets/${encodeURIComponent(done.ticket.id)}`;
  return done;
});
onSubmit("#message-form", (f) => send(ticketPath("messages"), f));
onSubmit("#escalate-form", (f) => send(ticketPath("escalate"), f));
onSubmit("#correct-form", (f) => send(ticketPath("corrections"), f));
onSubmit("#close-form", (f) => send(ticketPath("close"), f));
onSubmit("#forget-form", async (f) => {
  if (!confirm("Forget this customer? Their e-mail is destroyed for good.")) return null;
  return send(ticketPath("forget"), f, { ifMatch: false });
});

$("#version-slider").addEventListener("input", (event) => {
  showVersion(Number(event.target.value)).catch((e) => showError(e.message));
});
$("#to-now").addEventListener("click", () => showVersion(view.last));
$("#status-filter").addEventListener("change", () => loadList());
window.addEventListener("hashchange", () => showTicket(routeTicket()));

// ---- live ------------------------------------------------------------

function follow() {
  const live = $("#live");
  const source = new EventSource("/api/events");
  const state = (name, label) => { live.dataset.state = name; live.textContent = label; };
  // Subscribed (first, or again after a lost connection): what changed
  // before that is in the list and the ticket as loaded now.
  source.addEventListener("ready", () => {
    state("live", "live");
    loadList();
    if (view.id) loadHistory(false);
  });
  source.addEventListener("change", (event) => {
    const change = JSON.parse(event.data);
    loadList();
    if (change.ticket === view.id) loadHistory(false);
  });
  source.addEventListener("resync", () => {
    loadList();
    if (view.id) loadHistory(false);
  });
  // EventSource reconnects by itself (with Last-Event-ID).
  source.addEventListener("error", () => state("offline", "reconnecting…"));
}

loadList().catch((e) => showError(e.message));
showTicket(routeTicket()).catch((e) => showError(e.message));
follow();
