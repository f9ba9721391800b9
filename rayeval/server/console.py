"""The web console of `rayeval server`: one page, served at the application's root, that acts through the
JSON API with the token its user typed in.

The page itself holds no data and needs no token; everything it shows comes from `/api/v1` with the token
as `Authorization: Bearer ...`. The token is kept in the browser's session storage (gone when the tab
closes), never in a cookie or the URL. What the API returns is put in the page as text, never as markup.
Buttons: stop (active tasks), restart, copy (a name and overrides), delete (asked to confirm), report and
logs; a form submits a task file. The list refreshes every few seconds.
"""

from __future__ import annotations

import html

__all__ = ["console_page"]

_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 12px}
table{border-collapse:collapse;margin-top:12px}
td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.id,td.state,td.progress,td.tags{white-space:nowrap}
button{margin:0 2px}
.panel{border:1px solid #ccc;padding:10px;margin:10px 0;max-width:900px}
.hidden{display:none}
#message{margin:8px 0;color:#05529b}
#message.error{color:#b00020}
textarea{width:100%;font:12px ui-monospace,monospace}
pre{white-space:pre-wrap;font-size:12px;max-height:300px;overflow:auto}
"""

_SCRIPT = r"""
const API = document.body.dataset.api;
const KEY = "rayeval-token";
let copying = null, deleting = null;

function $(id) { return document.getElementById(id); }
function say(text, error) { const m = $("message"); m.textContent = text; m.className = error ? "error" : ""; }
function token() { return sessionStorage.getItem(KEY); }

async function call(method, path, body, type) {
  const headers = {"Authorization": "Bearer " + token()};
  if (body !== undefined) headers["Content-Type"] = type || "application/json";
  const r = await fetch(API + path, {method, headers, body});
  if (r.status === 401) { logout("That token was not accepted."); throw new Error("unauthorized"); }
  return r;
}

async function detail(r) {
  try { const j = await r.json(); return j.detail || JSON.stringify(j); } catch (e) { return "HTTP " + r.status; }
}

function logout(why) {
  sessionStorage.removeItem(KEY);
  $("login").classList.remove("hidden");
  $("app").classList.add("hidden");
  say(why || "", Boolean(why));
}

async function login() {
  const value = $("token").value.trim();
  $("token").value = "";
  if (!value) { say("Paste your API token.", true); return; }
  sessionStorage.setItem(KEY, value);
  await start();
}

async function start() {
  if (!token()) { logout(); return; }
  let r;
  try { r = await call("GET", "/whoami"); } catch (e) { return; }
  if (!r.ok) { logout(await detail(r)); return; }
  const who = await r.json();
  $("who").textContent = who.name + (who.admin ? " (admin: every task)" : " (tags: " + who.tags.join(", ") + ")");
  $("login").classList.add("hidden");
  $("app").classList.remove("hidden");
  say("");
  await refresh();
}

function cell(row, text) {
  const td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td;
}

function button(td, label, cls, action) {
  const b = document.createElement("button");
  b.textContent = label; b.className = cls; b.onclick = action; td.appendChild(b);
}

const ACTIVE = ["pending", "running", "stopping"];

async function refresh() {
  if (!token()) return;
  let r;
  try { r = await call("GET", "/tasks"); } catch (e) { return; }
  if (!r.ok) { say(await detail(r), true); return; }
  const rows = await r.json();
  const body = $("tasks").querySelector("tbody");
  body.replaceChildren();
  for (const t of rows) {
    const tr = document.createElement("tr");
    tr.dataset.task = t.task_id;
    cell(tr, t.task_id).className = "id";
    cell(tr, t.name || "");
    cell(tr, t.state).className = "state";
    cell(tr, (100 * t.progress).toFixed(1) + "%").className = "progress";
    cell(tr, (t.tags || []).join(", ")).className = "tags";
    cell(tr, t.creator || "");
    cell(tr, t.created_at ? t.created_at.replace("T", " ").slice(0, 19) : "");
    cell(tr, Object.entries(t.resources || {}).map(([k, v]) => k + ": " + v).join("; "));
    cell(tr, t.remarks || "");
    const acts = cell(tr, "");
    if (ACTIVE.includes(t.state)) button(acts, "Stop", "stop", () => act("POST", t.task_id, "/stop", "stopping"));
    else button(acts, "Restart", "restart", () => act("POST", t.task_id, "/restart", "restarting", "{}"));
    button(acts, "Copy", "copy", () => openCopy(t));
    if (!ACTIVE.includes(t.state)) button(acts, "Delete", "delete", () => openDelete(t));
    button(acts, "Report", "report", () => report(t.task_id));
    button(acts, "Logs", "logs", () => logs(t.task_id));
    body.appendChild(tr);
  }
  $("count").textContent = rows.length + " task(s), " + new Date().toLocaleTimeString();
}

async function act(method, task, suffix, doing, body) {
  say(doing + " " + task + "...");
  const r = await call(method, "/tasks/" + encodeURIComponent(task) + suffix, body);
  if (!r.ok) { say(await detail(r), true); return null; }
  const done = await r.json();
  say(done.message || (done.action + " " + done.task_id));
  await refresh();
  return done;
}

function openCopy(t) {
  copying = t.task_id;
  $("copy-of").textContent = t.task_id;
  $("copy-name").value = (t.name || "task") + "-copy";
  $("copy-overrides").value = "{}";
  $("copy-panel").classList.remove("hidden");
}

async function doCopy() {
  let overrides;
  try { overrides = JSON.parse($("copy-overrides").value || "{}"); }
  catch (e) { say("Overrides must be a JSON object: " + e.message, true); return; }
  const body = JSON.stringify({name: $("copy-name").value.trim() || null, overrides});
  $("copy-panel").classList.add("hidden");
  await act("POST", copying, "/copy", "copying", body);
}

function openDelete(t) {
  deleting = t.task_id;
  $("delete-of").textContent = t.task_id;
  $("delete-panel").classList.remove("hidden");
}

async function doDelete() {
  $("delete-panel").classList.add("hidden");
  await act("DELETE", deleting, "", "deleting");
}

async function report(task) {
  const r = await call("GET", "/tasks/" + encodeURIComponent(task) + "/report");
  if (!r.ok) { say(await detail(r), true); return; }
  const url = URL.createObjectURL(new Blob([await r.text()], {type: "text/html"}));
  window.open(url, "_blank");
}

async function logs(task) {
  const r = await call("GET", "/tasks/" + encodeURIComponent(task) + "/logs");
  if (!r.ok) { say(await detail(r), true); return; }
  const events = await r.json();
  $("logs-of").textContent = task;
  $("logs-text").textContent = events.map(e => e.at.slice(0, 19) + " " + e.level + " " + e.message).join("\n");
  $("logs-panel").classList.remove("hidden");
}

async function submitTask() {
  const text = $("spec").value;
  if (!text.trim()) { say("Paste a task file (YAML or JSON), or choose one.", true); return; }
  say("submitting...");
  const r = await call("POST", "/tasks", text, "application/yaml");
  if (!r.ok) { say(await detail(r), true); return; }
  const done = await r.json();
  say("submitted " + done.task_id);
  $("spec").value = "";
  await refresh();
}

async function readFile() {
  const f = $("spec-file").files[0];
  if (f) $("spec").value = await f.text();
}

$("login-button").onclick = login;
$("token").addEventListener("keydown", e => { if (e.key === "Enter") login(); });
$("logout").onclick = () => logout("Logged out.");
$("submit").onclick = submitTask;
$("spec-file").onchange = readFile;
$("copy-go").onclick = doCopy;
$("copy-cancel").onclick = () => $("copy-panel").classList.add("hidden");
$("delete-go").onclick = doDelete;
$("delete-cancel").onclick = () => $("delete-panel").classList.add("hidden");
$("logs-close").onclick = () => $("logs-panel").classList.add("hidden");
setInterval(refresh, 3000);
start();
"""

_BODY = """
<h1>rayeval</h1>
<div id="message" role="status"></div>
<div id="login" class="panel hidden">
  <label>API token <input id="token" type="password" size="60" autocomplete="off"></label>
  <button id="login-button">Log in</button>
  <p>Ask the cluster's administrator for a token (<code>rayeval server token create</code>). It is kept in
  this tab only, until the tab closes.</p>
</div>
<div id="app" class="hidden">
  <div>Logged in as <b id="who"></b> <button id="logout">Log out</button> · <span id="count"></span></div>
  <div class="panel">
    <b>Submit a task</b> (its file, YAML or JSON) <input id="spec-file" type="file" accept=".yaml,.yml,.json">
    <textarea id="spec" rows="8" placeholder="name: my-task&#10;mode: inference_and_evaluation&#10;..."></textarea>
    <button id="submit">Submit</button>
  </div>
  <div id="copy-panel" class="panel hidden">
    <b>Copy <span id="copy-of"></span></b><br>
    <label>Name <input id="copy-name" size="40"></label><br>
    <label>Overrides (JSON: dotted path -> value, e.g. {"parameters.temperature": 0.2})
    <textarea id="copy-overrides" rows="3"></textarea></label>
    <button id="copy-go">Copy and run</button> <button id="copy-cancel">Cancel</button>
  </div>
  <div id="delete-panel" class="panel hidden">
    <b>Delete <span id="delete-of"></span>?</b> Its record and every file of its results are removed.
    <button id="delete-go">Delete</button> <button id="delete-cancel">Cancel</button>
  </div>
  <div id="logs-panel" class="panel hidden">
    <b>Log of <span id="logs-of"></span></b> <button id="logs-close">Close</button>
    <pre id="logs-text"></pre>
  </div>
  <table id="tasks">
    <thead><tr><th>task</th><th>name</th><th>state</th><th>progress</th><th>tags</th><th>creator</th>
    <th>created (UTC)</th><th>resources</th><th>remarks</th><th></th></tr></thead>
    <tbody></tbody>
  </table>
</div>
"""


def console_page(api_base: str) -> str:
    """The console's page; `api_base` is where its API answers (the application's prefix + /api/v1)."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>rayeval</title>"
        f"<meta name='referrer' content='no-referrer'><style>{_STYLE}</style></head>"
        f"<body data-api='{html.escape(api_base, quote=True)}'>{_BODY}<script>{_SCRIPT}</script></body></html>"
    )
