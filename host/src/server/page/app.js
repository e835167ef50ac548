// The superstep page: runs, a run's graph, events, outputs, checkpoints and pending
// requests. Plain DOM, no framework. The token comes from the URL the server printed
// (?token=...) and goes to the API in the Authorization header only. Everything a
// run reports is shown as text, never parsed as HTML.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
let workflows = [];
let view = null; // what the current view must stop when left

/** Calls the API; resolves to the JSON body, or rejects with the error it names. */
async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const json = text ? JSON.parse(text) : {};
  if (!response.ok) throw new Error(json.error || `${response.status}`);
  return json;
}

/** An element with text content and attributes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const pretty = (value) => JSON.stringify(value, null, 2);

/** Shows `message` in the alert element `id` (or clears it). */
function say(id, message) {
  $(id).textContent = message || "";
}

// ---- routing ----------------------------------------------------------------

function route() {
  if (view) view.stop();
  const match = location.hash.match(/^#\/runs\/([A-Za-z0-9-]+)$/);
  $("runs-view").hidden = !!match;
  $("run-view").hidden = !match;
  view = match ? showRun(match[1]) : showRuns();
}

async function start() {
  try {
    workflows = (await api("GET", "/v1/workflows")).workflows;
    $("connection").textContent = "";
  } catch (error) {
    $("connection").textContent = `cannot reach the API: ${error.message}`;
  }
  const runnable = workflows.filter((w) => !w.error);
  for (const w of runnable) {
    $("start-workflow").append(el("option", { value: w.id, text: `${w.id} (${w.name})` }));
    $("filter-workflow").append(el("option", { value: w.id, text: w.id }));
  }
  $("start-form").addEventListener("submit", startRun);
  window.addEventListener("hashchange", route);
  route();
}

// ---- the list of runs ---------------------------------------------------------

function showRuns() {
  let timer = null;
  const refresh = async () => {
    const query = new URLSearchParams();
    if ($("filter-status").value) query.set("status", $("filter-status").value);
    if ($("filter-workflow").value) query.set("workflow", $("filter-workflow").value);
    try {
      const { runs } = await api("GET", `/v1/runs?${query}`);
      drawRuns(runs);
    } catch (error) {
      $("connection").textContent = error.message;
    }
    timer = setTimeout(refresh, 2000);
  };
  const filter = () => { clearTimeout(timer); refresh(); };
  $("filter-status").addEventListener("change", filter);
  $("filter-workflow").addEventListener("change", filter);
  refresh();
  return {
    stop() {
      clearTimeout(timer);
      $("filter-status").removeEventListener("change", filter);
      $("filter-workflow").removeEventListener("change", filter);
    },
  };
}

function drawRuns(runs) {
  const rows = runs.map((run) =>
    el("tr", { "data-run": run.run_id },
      el("td", {}, el("a", { href: `#/runs/${run.run_id}`, text: run.run_id })),
      el("td", { text: run.workflow }),
      el("td", { class: `status ${run.status}`, text: run.status }),
      el("td", { text: run.superstep ?? "" }),
      el("td", { text: run.updated_at })));
  $("runs").tBodies[0].replaceChildren(...rows);
  $("no-runs").hidden = runs.length > 0;
}

async function startRun(event) {
  event.preventDefault();
  say("start-error");
  let input;
  try {
    input = JSON.parse($("start-input").value);
  } catch (error) {
    return say("start-error", `the input is not JSON: ${error.message}`);
  }
  try {
    const body = { workflow: $("start-workflow").value, input, input_kind: $("start-kind").value };
    const { run_id } = await api("POST", "/v1/runs", body);
    location.hash = `#/runs/${run_id}`;
  } catch (error) {
    say("start-error", error.message);
  }
}

// ---- one run ------------------------------------------------------------------

function showRun(runId) {
  const state = { runId, stopped: false, controller: new AbortController(), selected: null };
  $("run-id").textContent = runId;
  $("events").replaceChildren();
  $("checkpoint-detail").hidden = true;
  say("run-error");
  $("cancel-button").onclick = () => act(state, "cancel", {});
  $("resume-button").onclick = () => act(state, "resume", {});
  refreshRun(state).then(() => follow(state));
  return {
    stop() {
      state.stopped = true;
      state.controller.abort();
    },
  };
}

/** Runs `action` (cancel or resume) on the run, saying what went wrong. */
async function act(state, action, body) {
  say("run-error");
  try {
    await api("POST", `/v1/runs/${state.runId}/${action}`, body);
    await refreshRun(state);
  } catch (error) {
    say("run-error", error.message);
  }
}

/** Reads the run, its checkpoint tree and its graph again, and draws them. */
async function refreshRun(state) {
  try {
    const run = await api("GET", `/v1/runs/${state.runId}`);
    state.run = run;
    $("run-workflow").textContent = run.workflow;
    $("run-status").textContent = run.status;
    $("run-status").className = `status ${run.status}`;
    $("run-superstep").textContent = run.superstep ?? "–";
    $("run-reason").textContent = run.reason ? ` ${run.reason}` : "";
    const active = run.status === "running" || run.status === "queued";
    $("cancel-button").disabled = !active;
    $("resume-button").disabled = active || !run.last_checkpoint;
    drawRequests(state, run.pending);
    drawOutputs(run.outputs);
    drawGraph(workflows.find((w) => w.id === run.workflow), run.pending);
    drawTree(state, await api("GET", `/v1/runs/${state.runId}/checkpoints`));
  } catch (error) {
    say("run-error", error.message);
  }
}

function drawOutputs(outputs) {
  $("outputs").replaceChildren(...outputs.map((o) =>
    el("div", { class: "output" },
      el("div", { class: "muted", text: `${o.kind} from ${o.executor}, superstep ${o.superstep}` }),
      el("pre", { text: pretty(o.body) }))));
  $("no-outputs").hidden = outputs.length > 0;
}

/**
 * Whether a request asks for an approval (its kind speaks of a review or an approval,
 * or its body holds a plan): then it gets approve and reject buttons, which answer
 * `{"approved": true}` or `{"approved": false, "feedback": "..."}`.
 */
function isApproval(request) {
  const body = request.body;
  const holdsPlan = body !== null && typeof body === "object" && "plan" in body;
  return /review|approv/i.test(request.kind) || holdsPlan;
}

function drawRequests(state, pending) {
  const shown = new Set([...$("requests").children].map((n) => n.dataset.request));
  const wanted = new Set(pending.map((r) => r.request_id));
  for (const node of [...$("requests").children]) {
    if (!wanted.has(node.dataset.request)) node.remove();
  }
  for (const request of pending) {
    if (!shown.has(request.request_id)) $("requests").append(requestForm(state, request));
  }
  $("no-requests").hidden = pending.length > 0;
}

function requestForm(state, request) {
  const answer = el("textarea", { rows: 2, spellcheck: "false", class: "answer" });
  answer.value = "";
  const error = el("p", { class: "error", role: "alert" });
  const send = async (response) => {
    error.textContent = "";
    try {
      const path = `/v1/runs/${state.runId}/requests/${encodeURIComponent(request.request_id)}`;
      await api("POST", path, { response });
      node.remove();
      await refreshRun(state);
    } catch (e) {
      error.textContent = e.message;
    }
  };
  const sendJson = () => {
    try {
      send(JSON.parse(answer.value));
    } catch (e) {
      error.textContent = `the response is not JSON: ${e.message}`;
    }
  };
  const actions = el("div", { class: "actions" });
  if (isApproval(request)) {
    const feedback = el("input", { class: "feedback", placeholder: "feedback (for a rejection)" });
    actions.append(
      el("button", { type: "button", class: "approve", text: "Approve",
        onclick: () => send({ approved: true }) }),
      el("button", { type: "button", class: "reject danger", text: "Reject",
        onclick: () => send({ approved: false, feedback: feedback.value }) }),
      feedback);
  }
  actions.append(el("button", { type: "button", class: "secondary send", text: "Send JSON", onclick: sendJson }));
  const node = el("div", { class: "request", "data-request": request.request_id },
    el("div", {}, el("code", { text: request.request_id }),
      el("span", { class: "muted", text: ` ${request.kind} from ${request.executor}` })),
    el("pre", { class: "body", text: pretty(request.body) }),
    answer, actions, error);
  return node;
}

// ---- events -------------------------------------------------------------------

/** Follows the run's Server-Sent Events, reconnecting with Last-Event-ID. */
async function follow(state) {
  let last = null;
  let pending = null;
  const later = () => {
    // Many events come in a burst: read the run once after it.
    clearTimeout(pending);
    pending = setTimeout(() => refreshRun(state), 150);
  };
  while (!state.stopped) {
    try {
      const headers = { Authorization: `Bearer ${token}` };
      if (last !== null) headers["Last-Event-ID"] = String(last);
      const response = await fetch(`/v1/runs/${state.runId}/events`,
        { headers, signal: state.controller.signal });
      if (!response.ok) throw new Error(`${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parseEvent(block);
          if (!event) continue;
          if (event.id !== null) {
            last = event.id;
            showEvent(event.data);
          }
          later();
        }
      }
      later();
      // The stream ends with the run: stop unless it was cut short.
      const run = await api("GET", `/v1/runs/${state.runId}`);
      if (run.status === "completed" || run.status === "failed") return;
    } catch (error) {
      if (state.stopped) return;
      $("connection").textContent = `events: ${error.message}; reconnecting`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      $("connection").textContent = "";
    }
  }
}

function parseEvent(block) {
  let id = null;
  let data = null;
  for (const line of block.split("\n")) {
    if (line.startsWith("id:")) id = Number(line.slice(3).trim());
    else if (line.startsWith("data:")) data = JSON.parse(line.slice(5).trim());
  }
  // A `status` event has no id: it only says that the run's status changed.
  return data === null ? null : { id, data };
}

function showEvent(event) {
  const { event: name, ...rest } = event;
  const detail = Object.entries(rest)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" ");
  const list = $("events");
  const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(el("li", { "data-event": name }, el("span", { class: "name", text: name }), ` ${detail}`));
  if (atEnd) list.scrollTop = list.scrollHeight;
  markGraph(event);
}

// ---- the graph ----------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Columns by distance from the start executor (unreached ones last). */
function layers(workflow) {
  const depth = new Map([[workflow.start, 0]]);
  const queue = [workflow.start];
  while (queue.length) {
    const from = queue.shift();
    for (const edge of workflow.edges.filter((e) => e.from === from)) {
      if (!depth.has(edge.to)) {
        depth.set(edge.to, depth.get(from) + 1);
        queue.push(edge.to);
      }
    }
  }
  const deepest = Math.max(0, ...depth.values());
  for (const id of workflow.executors) if (!depth.has(id)) depth.set(id, deepest + 1);
  return depth;
}

function drawGraph(workflow, pending) {
  const box = $("graph");
  if (!workflow || workflow.error) return box.replaceChildren();
  if (box.dataset.workflow !== workflow.id) {
    box.dataset.workflow = workflow.id;
    box.replaceChildren(graphSvg(workflow));
  }
  const asking = new Set(pending.map((r) => r.executor));
  for (const node of box.querySelectorAll(".node")) {
    node.classList.toggle("asking", asking.has(node.dataset.executor));
  }
}

function graphSvg(workflow) {
  const [w, h, gapX, gapY] = [130, 34, 60, 24];
  const depth = layers(workflow);
  const columns = new Map();
  const at = new Map();
  for (const id of workflow.executors) {
    const d = depth.get(id);
    const row = columns.get(d) || 0;
    columns.set(d, row + 1);
    at.set(id, { x: 10 + d * (w + gapX), y: 10 + row * (h + gapY) });
  }
  const width = 20 + Math.max(...[...at.values()].map((p) => p.x)) + w;
  const height = 30 + Math.max(...[...at.values()].map((p) => p.y)) + h;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7385" }));
  defs.append(marker);
  root.append(defs);
  for (const edge of workflow.edges) {
    const [a, b] = [at.get(edge.from), at.get(edge.to)];
    const forward = b.x > a.x;
    const [x1, y1] = forward ? [a.x + w, a.y + h / 2] : [a.x + w / 2, a.y + h];
    const [x2, y2] = forward ? [b.x, b.y + h / 2] : [b.x + w / 2, b.y + h];
    const bend = forward ? (x2 - x1) / 2 : 40;
    const d = forward
      ? `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`
      : `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 + bend} ${x2},${y2}`;
    root.append(svg("path", { class: "edge", d, "marker-end": "url(#arrow)" }));
    if (edge.kinds) {
      const label = svg("text", { class: "kinds", x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4,
        "text-anchor": "middle" }, edge.kinds.join(", "));
      root.append(label);
    }
  }
  for (const id of workflow.executors) {
    const p = at.get(id);
    const group = svg("g", { class: id === workflow.start ? "node start" : "node",
      "data-executor": id, transform: `translate(${p.x},${p.y})` });
    group.append(svg("rect", { width: w, height: h }));
    group.append(svg("text", { x: w / 2, y: h / 2 + 4, "text-anchor": "middle" }, id));
    root.append(group);
  }
  return root;
}

/** Lights the executors of the superstep that runs. */
function markGraph(event) {
  const node = (id) => $("graph").querySelector(`.node[data-executor="${CSS.escape(id)}"]`);
  if (event.event === "executor_invoked") node(event.executor)?.classList.add("active");
  if (event.event === "executor_completed" || event.event === "executor_failed") {
    node(event.executor)?.classList.remove("active");
  }
}

// ---- checkpoints --------------------------------------------------------------

function drawTree(state, tree) {
  const children = new Map();
  for (const c of tree.checkpoints) {
    const key = c.parent_id || "";
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(c);
  }
  const ids = new Set(tree.checkpoints.map((c) => c.checkpoint_id));
  const active = state.run && (state.run.status === "running" || state.run.status === "queued");
  const item = (c) => {
    const forked = c.edits.length ? " · forked" : "";
    const label = `…${c.checkpoint_id.slice(-12)} · superstep ${c.superstep} · ${c.status}${forked}`;
    const title = [c.checkpoint_id, ...c.edits].join("\n");
    const li = el("li", { "data-checkpoint": c.checkpoint_id },
      el("span", { text: label, title, onclick: () => showCheckpoint(state, c) }));
    if (c.checkpoint_id === tree.latest) li.classList.add("latest");
    if (c.checkpoint_id === state.selected) li.classList.add("selected");
    if (!active) {
      li.append(el("button", { type: "button", class: "secondary branch", text: "resume here",
        onclick: () => act(state, "resume", { checkpoint: c.checkpoint_id }) }));
    }
    return li;
  };
  // A chain is drawn flat; where a checkpoint was resumed more than once, each
  // branch is a list of its own below it.
  const chain = (c) => {
    const items = [item(c)];
    const below = children.get(c.checkpoint_id) || [];
    if (below.length === 1) items.push(...chain(below[0]));
    if (below.length > 1) {
      const branches = below.map((b) => el("li", { class: "branch" }, el("ul", {}, ...chain(b))));
      items[0].append(el("ul", { class: "branches" }, ...branches));
    }
    return items;
  };
  // Roots: no parent, or a parent of another run (or pruned).
  const roots = tree.checkpoints.filter((c) => !c.parent_id || !ids.has(c.parent_id));
  $("checkpoints").replaceChildren(...roots.flatMap(chain));
}

async function showCheckpoint(state, checkpoint) {
  state.selected = checkpoint.checkpoint_id;
  for (const li of $("checkpoints").querySelectorAll("li")) {
    li.classList.toggle("selected", li.dataset.checkpoint === state.selected);
  }
  $("checkpoint-detail").hidden = false;
  $("checkpoint-id").textContent = checkpoint.checkpoint_id;
  const states = await Promise.all(checkpoint.executors.map(async (executor) => {
    const path = `/v1/checkpoints/${checkpoint.checkpoint_id}?state=${encodeURIComponent(executor)}`;
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    const text = await response.text();
    let shown = text;
    try { shown = pretty(JSON.parse(text)); } catch { /* not JSON: as it is */ }
    return el("div", { class: "state", "data-executor": executor },
      el("div", { class: "muted", text: executor }), el("pre", { text: shown }));
  }));
  $("states").replaceChildren(...states);
}

start();
