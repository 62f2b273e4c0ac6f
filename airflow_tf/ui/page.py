"""The job page: one self-contained HTML document (no external scripts, styles or fonts: Airflow
deployments are often offline). Its script fetches ``/airflow-tf/api/jobs/...`` (the same path
with ``/api`` in front), draws the nodes table and the metric curves (inline SVG), and fetches
again every REFRESH_S seconds until the job has ended. Text from nodes is only ever set as
``textContent``, never parsed as HTML."""

REFRESH_S = 2

PAGE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>airflow-tf training job</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1a202c; }
 h2 { margin: 18px 0 4px; font-size: 18px; }
 .meta { color: #4a5568; margin-bottom: 8px; }
 table { border-collapse: collapse; width: 100%; }
 th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
 th { background: #f7fafc; }
 .state-running, .state-started { color: #2b6cb0; font-weight: 600; }
 .state-exited.ok { color: #2f855a; font-weight: 600; }
 .state-exited.bad, .state-lost { color: #c53030; font-weight: 600; }
 pre { background: #1a202c; color: #e2e8f0; padding: 6px 8px; margin: 4px 0; max-height: 18em; overflow: auto;
       font-size: 12px; white-space: pre-wrap; }
 details { margin: 2px 0; }
 .charts { display: flex; flex-wrap: wrap; gap: 12px; }
 .chart { border: 1px solid #e2e8f0; padding: 4px; }
 .chart text { font-size: 11px; fill: #4a5568; }
 .note { background: #fffaf0; border: 1px solid #f6ad55; padding: 6px 8px; }
 .error { color: #c53030; }
</style></head>
<body data-state="loading" data-refreshes="0">
<div id="status" class="meta">loading...</div>
<div id="note"></div>
<div id="jobs"></div>
<script>
"use strict";
const REFRESH_MS = __REFRESH_MS__;
const dataUrl = location.pathname.replace(/\\/jobs\\//, "/api/jobs/") + location.search;
let refreshes = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  const s = Math.round(value);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${value} s`;
}

function nodeRow(node) {
  const bad = node.exit_code !== null && node.exit_code !== 0;
  const stateClass = `state state-${node.state}` + (node.state === "exited" ? (bad ? " bad" : " ok") : "");
  return el("tr", {"class": "node", "data-node-index": node.node_index},
    el("td", {"class": "title"}, node.title),
    el("td", {"class": "role"}, node.roles),
    el("td", {"class": "host"}, node.host),
    el("td", {"class": stateClass}, node.state),
    el("td", {"class": "exit-code"}, node.exit_code === null ? "" : node.exit_code),
    el("td", {"class": "duration"}, seconds(node.duration_s)),
    el("td", {"class": "try"}, node.try === null || node.try === undefined ? "" : node.try),
    el("td", {"class": "launch"}, node.launch_state || "", node.task_name ? ` (${node.task_name})` : ""));
}

function nodeDetails(node) {
  const cell = el("td", {"colspan": 8});
  for (const process of node.processes) {
    const lines = Object.entries(process.env).map(([k, v]) => `${k}=${v}`).join("\\n");
    cell.append(el("details", {"class": "env"}, el("summary", {}, `${process.label}: environment`),
                   el("pre", {}, lines || "(none)")));
  }
  const tail = node.tail.length ? node.tail.join("\\n") : "(no output yet)";
  cell.append(el("details", {"class": "tail", "open": ""}, el("summary", {}, `last ${node.tail.length} log lines`),
                 el("pre", {}, tail)));
  if (node.read_error) cell.append(el("div", {"class": "error"}, `could not read the node: ${node.read_error}`));
  return el("tr", {"class": "node-details"}, cell);
}

function chart(name, points) {
  const w = 320, h = 180, pad = 32;
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => pad + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (w - 2 * pad);
  const sy = y => h - pad - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0)) * (h - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("class", "chart");
  svg.setAttribute("data-metric", name);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  add("text", {x: w / 2, y: 14, "text-anchor": "middle"}, name);
  add("line", {x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, stroke: "#a0aec0"});
  add("line", {x1: pad, y1: pad, x2: pad, y2: h - pad, stroke: "#a0aec0"});
  add("polyline", {points: points.map(p => `${sx(p[0])},${sy(p[1])}`).join(" "), fill: "none",
                   stroke: "#3182ce", "stroke-width": 2});
  for (const p of points) add("circle", {cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: "#3182ce"});
  add("text", {x: pad, y: h - 8}, `epoch ${x0}`);
  add("text", {x: w - pad, y: h - 8, "text-anchor": "end"}, `${x1}`);
  add("text", {x: 2, y: pad - 4}, y1.toPrecision(4));
  add("text", {x: 2, y: h - pad + 12}, y0.toPrecision(4));
  return svg;
}

function curves(history) {
  const hidden = new Set(["epoch", "epochs", "rank", "time"]);
  const series = {};
  for (const record of history) {
    if (record.epoch === undefined) continue;
    for (const [key, value] of Object.entries(record)) {
      if (!hidden.has(key) && typeof value === "number") (series[key] = series[key] || []).push([record.epoch, value]);
    }
  }
  const box = el("div", {"class": "charts"});
  for (const name of Object.keys(series).sort()) box.append(chart(name, series[name]));
  return box;
}

function results(job) {
  const r = job.results;
  if (!r) return null;
  const list = el("ul", {"class": "results"});
  const item = (label, value, href) => {
    if (!value) return;
    list.append(el("li", {}, `${label}: `, href ? el("a", {href: href, target: "_blank"}, value) : value));
  };
  item("final metrics", r.metrics && Object.keys(r.metrics).length ? JSON.stringify(r.metrics) : "");
  item("model", r.model_path);
  item("outputs", r.output_dir);
  item("TensorBoard logs", r.tensorboard_dir);
  if (r.mlflow && r.mlflow.url) item("MLflow run", r.mlflow.run_id, r.mlflow.url);
  return list;
}

function jobSection(job) {
  const section = el("section", {"class": "job", "data-group": job.group, "data-state": job.state});
  section.append(el("h2", {}, `${job.group}: ${job.strategy}, world size ${job.world_size}`));
  section.append(el("div", {"class": "meta"}, `job ${job.job_id} · attempt ${job.attempt} · wait task ${job.state}` +
                    ` · success rule ${job.success_rule}`));
  const table = el("table", {"class": "nodes"}, el("thead", {}, el("tr", {},
    ...["node", "role", "host", "state", "exit code", "duration", "try", "launch task"].map(t => el("th", {}, t)))));
  const body = el("tbody");
  for (const node of job.nodes) { body.append(nodeRow(node)); body.append(nodeDetails(node)); }
  table.append(body);
  section.append(table);
  if (job.history.length) {
    section.append(el("h3", {}, `metrics (${job.history.length} epochs, from ${job.history_source})`));
    section.append(curves(job.history));
  }
  section.append(results(job));
  return section;
}

async function refresh() {
  let data;
  try {
    const response = await fetch(dataUrl, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}: ${await response.text()}`);
    data = await response.json();
  } catch (error) {
    document.getElementById("status").textContent = `could not load the job: ${error.message}`;
    document.body.dataset.state = "error";
    setTimeout(refresh, REFRESH_MS * 3);
    return;
  }
  refreshes += 1;
  const jobs = document.getElementById("jobs");
  jobs.replaceChildren(...data.jobs.map(jobSection));
  document.getElementById("note").replaceChildren(...(data.note ? [el("div", {"class": "note"}, data.note)] : []));
  // No job yet (the plan task has not run): keep looking, less often.
  const running = data.jobs.some(job => !job.finished) || !data.jobs.length;
  const when = new Date().toLocaleTimeString();
  document.getElementById("status").textContent = `${data.dag_id} / ${data.run_id} · read ${when} · ` +
    (running ? `refreshing every ${REFRESH_MS / 1000} s while the job runs` : "the job has ended");
  document.body.dataset.state = running ? "running" : "ended";
  document.body.dataset.refreshes = String(refreshes);
  if (running) setTimeout(refresh, data.jobs.length ? REFRESH_MS : REFRESH_MS * 3);
}
refresh();
</script>
</body></html>
""".replace("__REFRESH_MS__", str(REFRESH_S * 1000))
