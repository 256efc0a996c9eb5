// The reviewer page: the /v1/reviews API in a browser. Plain DOM, no framework, and
// every value from the API is written with textContent (never parsed as HTML).
"use strict";

const TOKEN_KEY = "pactmesh.reviewer.token";
const $ = (id) => document.getElementById(id);

const state = { cursor: null, selected: null };

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function showMessage(kind, text, fieldErrors) {
  const box = $("message");
  box.replaceChildren(el("span", text));
  box.className = kind;
  if (fieldErrors && fieldErrors.length) {
    const list = el("ul");
    for (const e of fieldErrors) {
      const where = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body").join(".") : "";
      list.append(el("li", where ? `${where}: ${e.msg}` : e.msg));
    }
    box.append(list);
  }
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `request refused (${status})`);
    this.status = status;
    this.fieldErrors = Array.isArray(detail) ? detail : [];
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    payload = null;
  }
  if (!response.ok) {
    const detail = payload && payload.detail !== undefined ? payload.detail : response.statusText;
    throw new ApiError(response.status, detail);
  }
  return payload;
}

function reportError(err, doing) {
  if (err instanceof ApiError) {
    const hint = {
      401: "Sign in again: the token is missing, expired or not accepted.",
      403: "Not allowed: ",
      404: "Not found (or not in your tenant): ",
      409: "Conflict: ",
      422: "Refused: ",
    }[err.status] || `Error ${err.status}: `;
    const text = err.status === 401 ? `${hint} (${err.message})` : `${hint}${err.message}`;
    showMessage("error", `${doing} failed. ${text}`, err.fieldErrors);
  } else {
    showMessage("error", `${doing} failed: ${err.message}`);
  }
}

// The token's claims, for showing who is signed in. Display only: the API verifies it.
function claims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch (_) {
    return null;
  }
}

function showIdentity() {
  const c = token() ? claims(token()) : null;
  $("whoami").textContent = c
    ? `Signed in as ${c.sub} · tenant ${c.tenant} · roles ${(c.roles || []).join(", ") || "none"}`
    : "No token yet: the token stays in this tab only.";
}

function age(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function liveClaim(review) {
  return review.claimed_by && Date.parse(review.claimed_until) > Date.now() ? review.claimed_by : "";
}

function reviewRow(review) {
  const row = el("tr");
  row.dataset.reviewId = review.review_id;
  row.tabIndex = 0;
  row.append(
    el("td", age(review.requested_at)),
    el("td", review.workflow),
    el("td", review.rule),
    el("td", review.priority, `prio-${review.priority}`),
    el("td", review.required_role),
    el("td", liveClaim(review) || "—"),
  );
  const open = () => openReview(review.review_id);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (event) => event.key === "Enter" && open());
  if (state.selected && state.selected.review_id === review.review_id) row.classList.add("selected");
  return row;
}

async function loadQueue(append) {
  if (!token()) return;
  const params = new URLSearchParams({ state: $("filter-state").value, limit: "25" });
  if ($("filter-priority").value) params.set("priority", $("filter-priority").value);
  if ($("filter-workflow").value.trim()) params.set("workflow", $("filter-workflow").value.trim());
  if (append && state.cursor) params.set("cursor", state.cursor);
  try {
    const page = await api("GET", `/v1/reviews?${params}`);
    const rows = page.items.map(reviewRow);
    if (append) $("reviews").append(...rows);
    else $("reviews").replaceChildren(...rows);
    state.cursor = page.next_cursor;
    $("more").hidden = !page.next_cursor;
    $("empty").hidden = $("reviews").children.length > 0;
  } catch (err) {
    reportError(err, "Loading the queue");
  }
}

function fact(list, name, value) {
  list.append(el("dt", name), el("dd", value === null || value === undefined ? "—" : value));
}

function renderReview(review) {
  state.selected = review;
  $("detail").hidden = false;
  $("detail").dataset.reviewId = review.review_id;
  $("detail-state").textContent = review.state;
  $("detail-summary").textContent = review.summary;
  const facts = $("detail-facts");
  facts.replaceChildren();
  fact(facts, "Rule", review.rule);
  fact(facts, "Workflow", `${review.workflow} (${review.workflow_id})`);
  fact(facts, "Needs role", review.required_role);
  fact(facts, "Priority", review.priority);
  fact(facts, "Requested", `${new Date(review.requested_at).toLocaleString()} (${age(review.requested_at)} ago)`);
  fact(facts, "Expires", new Date(review.expires_at).toLocaleString());
  const holder = liveClaim(review);
  fact(facts, "Claimed by", holder ? `${holder} until ${new Date(review.claimed_until).toLocaleTimeString()}` : "nobody");
  if (review.decision) {
    fact(facts, "Decision", `${review.decision} by ${review.decided_by}`);
    fact(facts, "Comment", review.comment || "—");
  }
  $("detail-action").textContent = JSON.stringify(review.edited_action || review.proposed_action, null, 2);
  $("edit-json").value = JSON.stringify(review.proposed_action, null, 2);
  const pending = review.state === "pending";
  for (const id of ["claim", "release", "approve", "reject", "submit-edit", "comment", "edit-json"]) {
    $(id).disabled = !pending;
  }
  for (const row of $("reviews").children) {
    row.classList.toggle("selected", row.dataset.reviewId === review.review_id);
  }
}

async function loadHistory(reviewId) {
  const entries = await api("GET", `/v1/reviews/${reviewId}/history`);
  $("history").replaceChildren(
    ...entries.map((entry) => {
      const item = el("li");
      item.append(el("strong", entry.action), ` by ${entry.actor}, ${new Date(entry.at).toLocaleString()}`);
      const detail = Object.keys(entry.detail || {}).length ? JSON.stringify(entry.detail) : "";
      if (detail) item.append(el("div", detail, "muted"));
      return item;
    }),
  );
}

// One line per step of the request, with the detail that step carries.
function describeStep(kind, d) {
  switch (kind) {
    case "request.accepted": return [`over ${d.channel}`, d.text];
    case "request.routed": return [`${d.workflow} (${d.confidence.toFixed(2)})${d.model ? " by " + d.model : ""}`, d.reason];
    case "model.called": {
      const prompt = d.prompt ? `${d.prompt.name} v${d.prompt.version}` : "no template";
      if (d.error_type) return [`${d.role} (${prompt}) -> ${d.model}: failed, ${d.error_type}`];
      const tokens = `${d.usage.input_tokens}+${d.usage.output_tokens} tokens`;
      return [`${d.role} (${prompt}) -> ${d.response_model || d.model}: ${d.validation}, ${tokens}`,
        `raw output: ${d.raw_output || ""}`, ...d.errors];
    }
    case "tool.called": return [`${d.tool} -> ${d.ok ? "ok" : d.error_code + ": " + d.message}`,
      `arguments: ${JSON.stringify(d.arguments)}`, ...(d.ok ? [`result: ${JSON.stringify(d.result)}`] : [])];
    case "gate.fired": return [`${d.rule}: waits for a ${d.required_role}`, JSON.stringify(d.proposed_action)];
    case "review.decided": return [`${d.decision} by ${d.reviewer}`, d.comment];
    case "workflow.completed": return [`${d.workflow} ${d.outcome}`, d.error || ""];
    case "result.delivered": return [`${d.outcome} on ${d.topic}`];
    default: return [JSON.stringify(d)];
  }
}

async function loadTimeline(reviewId) {
  const timeline = await api("GET", `/v1/reviews/${reviewId}/timeline`);
  $("timeline").replaceChildren(
    ...timeline.entries.map((entry) => {
      const kind = entry.type.replace(/^audit\./, "").replace(/\.v\d+$/, "");
      const [head, ...rest] = describeStep(kind, entry.detail);
      const item = el("li");
      item.dataset.type = kind;
      item.append(el("strong", kind), ` ${head}`);
      for (const line of rest.filter(Boolean)) item.append(el("div", line, "muted"));
      return item;
    }),
  );
}

async function openReview(reviewId) {
  clearMessage();
  try {
    renderReview(await api("GET", `/v1/reviews/${reviewId}`));
    await loadHistory(reviewId);
    await loadTimeline(reviewId);
  } catch (err) {
    reportError(err, "Opening the review");
  }
}

async function act(doing, method, suffix, body) {
  if (!state.selected) return;
  const reviewId = state.selected.review_id;
  clearMessage();
  try {
    const review = await api(method, `/v1/reviews/${reviewId}/${suffix}`, body);
    renderReview(review);
    await loadHistory(reviewId);
    showMessage("ok", `${doing}: done.`);
    await loadQueue(false);
  } catch (err) {
    reportError(err, doing);
  }
}

function decide(decision) {
  return act(`${decision[0].toUpperCase()}${decision.slice(1)}`, "POST", "decision", {
    decision,
    comment: $("comment").value,
    edited_action: null,
  });
}

function submitEdit() {
  let edited;
  try {
    edited = JSON.parse($("edit-json").value);
  } catch (err) {
    showMessage("error", `The edited action is not valid JSON: ${err.message}`);
    return;
  }
  return act("Edit", "POST", "decision", { decision: "edit", comment: $("comment").value, edited_action: edited });
}

function start() {
  showIdentity();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    showIdentity();
    clearMessage();
    loadQueue(false);
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showIdentity();
    $("reviews").replaceChildren();
    $("detail").hidden = true;
  });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadQueue(false);
  });
  $("more").addEventListener("click", () => loadQueue(true));
  $("claim").addEventListener("click", () => act("Claim", "POST", "claim"));
  $("release").addEventListener("click", () => act("Release", "DELETE", "claim"));
  $("approve").addEventListener("click", () => decide("approve"));
  $("reject").addEventListener("click", () => decide("reject"));
  $("submit-edit").addEventListener("click", submitEdit);
  loadQueue(false);
}

document.addEventListener("DOMContentLoaded", start);
