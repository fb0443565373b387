// dataswarm dashboard: polls the JSON API and redraws three tables. No build step, no dependencies.
// Every value from the network (topics, peer ids, reasons) goes in through textContent, never as HTML.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const INTERVAL_MS = Math.max(250, Number(params.get("interval")) || 2000);
  const TOKEN_KEY = "dataswarm-token";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function bar(done, failed, total) {
    const box = el("div", { class: "bar" });
    const d = el("div", { class: "done" });
    const f = el("div", { class: "failed" });
    const t = Math.max(1, total);
    d.style.width = (100 * done / t) + "%";
    f.style.width = (100 * failed / t) + "%";
    box.append(d, f);
    return box;
  }

  function short(id, n) {
    return id.length > n ? id.slice(0, n) + "…" : id;
  }

  async function getJson(path) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) {
      document.getElementById("auth").hidden = false;
      throw new Error("a token is needed");
    }
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  function renderJobs(jobs) {
    const body = document.getElementById("jobs-body");
    document.getElementById("jobs-empty").hidden = jobs.length > 0;
    body.replaceChildren(...jobs.map((job) => {
      const stages = el("div", { class: "stages" }, ...job.stages.map((s) =>
        el("div", { class: "stage", "data-stage": s.stage },
          el("span", { class: "name" }, s.stage),
          bar(s.done, s.failed, s.tasks),
          el("span", { class: "count" }, `${s.done}/${s.tasks} done` + (s.failed ? `, ${s.failed} failed` : "")))));
      const rows = el("div", { class: "stage rows", "data-stage": "rows" },
        bar(Math.min(job.rows, job.target), 0, job.target),
        el("span", { class: "count" }, `${job.rows}/${job.target}`));
      const reasons = Object.entries(job.rejections).sort((a, b) => b[1] - a[1]);
      const rejections = el("ul", { class: "reasons" }, ...reasons.map(([reason, n]) => el("li", {}, `${reason} ×${n}`)));
      return el("tr", { "data-job-id": job.job_id },
        el("td", { class: "mono", title: job.job_id }, job.job_id),
        el("td", { title: job.request }, job.topic || job.request),
        el("td", {}, el("span", { class: "state " + job.state }, job.state), job.error ? el("div", { class: "empty" }, job.error) : null,
          job.partial_reason ? el("div", { class: "empty" }, job.partial_reason) : null,
          job.waiting ? el("div", { class: "waiting" }, job.waiting.message) : null),
        el("td", {}, rows),
        el("td", {}, stages),
        el("td", {}, rejections));
    }));
  }

  function renderNodes(nodes) {
    const body = document.getElementById("nodes-body");
    document.getElementById("nodes-empty").hidden = nodes.length > 0;
    body.replaceChildren(...nodes.map((n) => {
      const rep = n.reputation;
      const score = rep
        ? el("div", { class: "score" }, bar(Math.round(rep.score * 100), 0, 100), rep.score.toFixed(2),
            rep.blacklisted ? el("span", { class: "badge blacklisted" }, "blacklisted") : null,
            el("span", { class: "empty" }, ` ${rep.accepted} ok · ${rep.rejected} rejected · ${rep.expired} expired`))
        : el("span", { class: "empty" }, "new");
      const best = Math.max(0, ...n.models.map((m) => m.tok_s));
      return el("tr", { "data-peer-id": n.peer_id },
        el("td", { class: "mono", title: n.peer_id }, short(n.peer_id, 16), " ",
          el("span", { class: "badge" + (n.live ? " live" : "") }, n.live ? "live" : "offline")),
        el("td", {}, n.models.map((m) => m.name).join(", ") || "—"),
        el("td", { class: "count" }, best ? best.toFixed(1) : "—"),
        el("td", { class: "count" }, `${n.free_slots}/${n.total_slots}`),
        el("td", { class: "count" }, n.held_leases),
        el("td", { class: "count" }, n.tasks_done),
        el("td", {}, score));
    }));
  }

  function renderActivity(activity) {
    document.getElementById("results-rate").textContent = activity.results_per_s.toFixed(2);
    const body = document.getElementById("rejections-body");
    document.getElementById("rejections-empty").hidden = activity.rejections.length > 0;
    body.replaceChildren(...activity.rejections.slice(0, 50).map((r) =>
      el("tr", { "data-reason": r.reason },
        el("td", { class: "count" }, new Date(r.at_ms).toLocaleTimeString()),
        el("td", { class: "mono" }, r.job_id || "—"),
        el("td", {}, r.scope),
        el("td", {}, r.reason),
        el("td", { class: "count" }, "×" + r.count))));
  }

  async function loadInfo() {
    const info = await getJson("/v1/info");
    const peer = document.getElementById("peer-id");
    peer.textContent = short(info.peer_id, 20);
    peer.title = info.peer_id;
    document.getElementById("models").textContent =
      "models: " + (Object.values(info.models).join(", ") || "any");
  }

  let infoLoaded = false;
  async function refresh() {
    const status = document.getElementById("status");
    try {
      if (!infoLoaded) { await loadInfo(); infoLoaded = true; }
      const [jobs, nodes, activity] = await Promise.all([
        getJson("/v1/jobs?limit=20"), getJson("/v1/nodes"), getJson("/v1/activity")]);
      renderJobs(jobs.jobs);
      renderNodes(nodes.nodes);
      renderActivity(activity);
      status.textContent = "updated " + new Date().toLocaleTimeString();
      status.classList.remove("error");
    } catch (err) {
      status.textContent = String(err.message || err);
      status.classList.add("error");
    }
  }

  document.getElementById("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    document.getElementById("auth").hidden = true;
    refresh();
  });

  refresh();
  setInterval(refresh, INTERVAL_MS);
})();
