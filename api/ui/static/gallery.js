// The batch page's live view: poll the gallery's state endpoint (same origin, the
// session cookie) and fill in progress, thumbnails and failures as jobs finish.
// Everything from the server goes in as text or attributes, never as HTML.
"use strict";

(function () {
  const section = document.getElementById("batch");
  if (!section) return;
  const url = section.dataset.stateUrl;
  const POLL_MS = 1500;

  function text(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }

  function tile(job) {
    const li = document.createElement("li");
    li.dataset.job = job.id;
    const a = document.createElement("a");
    a.href = job.href;
    a.title = job.prompt;
    li.appendChild(a);
    const prompt = document.createElement("span");
    prompt.className = "prompt";
    prompt.textContent = job.prompt;
    li.appendChild(prompt);
    return li;
  }

  function fill(li, job) {
    if (li.dataset.status === job.status) return;
    li.dataset.status = job.status;
    li.className = "tile tile-" + job.status;
    const a = li.querySelector("a");
    a.replaceChildren();
    if (job.thumb) {
      const img = document.createElement("img");
      img.src = job.thumb;
      img.alt = job.prompt;
      a.appendChild(img);
    } else {
      const span = document.createElement("span");
      span.className = "placeholder";
      span.textContent = job.status;
      a.appendChild(span);
    }
  }

  function failure(job) {
    const li = document.createElement("li");
    li.dataset.job = job.id;
    const a = document.createElement("a");
    a.href = job.href;
    a.textContent = job.id;
    const type = document.createElement("code");
    type.className = "error-type";
    type.textContent = job.error.type;
    const msg = document.createElement("span");
    msg.className = "error-message";
    msg.textContent = job.error.message;
    li.append(a, " ", type, " ", msg);
    return li;
  }

  function render(state) {
    const bar = document.getElementById("batch-progress");
    bar.value = state.progress.done;
    bar.max = state.progress.total;
    text("batch-percent", Math.round(state.progress.fraction * 100) + "%");
    text("batch-done", String(state.progress.done));
    text("batch-counts", Object.entries(state.counts).map(([k, v]) => k + " " + v).join(", "));
    const status = document.getElementById("batch-status");
    status.textContent = state.status;
    status.className = "state state-" + state.status;
    const grid = document.getElementById("grid");
    const failures = document.getElementById("failures");
    for (const job of state.jobs) {
      let li = grid.querySelector('li[data-job="' + CSS.escape(job.id) + '"]');
      if (!li) { li = tile(job); grid.appendChild(li); }
      fill(li, job);
      if (job.error && !failures.querySelector('li[data-job="' + CSS.escape(job.id) + '"]')) {
        failures.appendChild(failure(job));
      }
    }
    document.getElementById("failures-heading").hidden = !failures.children.length;
    document.getElementById("cancel-form").hidden = state.finished;
    document.getElementById("retry-form").hidden = !state.counts.failed;
    section.dataset.finished = state.finished ? "yes" : "no";
    return state.finished;
  }

  async function poll() {
    try {
      const r = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (!r.ok || !(r.headers.get("content-type") || "").startsWith("application/json")) return;
      if (render(await r.json())) return;  // finished: nothing more will change
    } catch (e) {
      // a blip (the API restarting): try again at the next tick
    }
    setTimeout(poll, POLL_MS);
  }

  if (section.dataset.finished !== "yes") setTimeout(poll, POLL_MS);
})();
