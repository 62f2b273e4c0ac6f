"""The training job as a user sees it in the real Airflow 3 UI, in a real headless Chromium
(Debian's, driven by Playwright): the job page (the plugin's FastAPI app, opened as the DAG run's
"Training job" tab), the launch tasks' names, the wait task's extra links, and who may read it.

One run of a 3-node job of sleeping ranks (tests/dags/tf_job_page.py): the page is checked while
the nodes run, then the same page, refreshing by itself, after the job ended."""

import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.e2e.server import wait_until

pytestmark = pytest.mark.e2e

DAG_ID = "tf_job_page"
SECRET = "job-page-secret-4711"  # the Variable behind the DAG's secret_environment_variables
CHROMIUM = "/usr/bin/chromium"  # Debian's package (requirements/apt.txt); Playwright downloads nothing


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is not installed (requirements/apt.txt)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _page(browser, server, token: str | None):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    if token:
        # The UI's own session cookie: what a logged-in user's browser sends.
        context.add_cookies([{"name": "_token", "value": token, "url": server.base}])
    return context, context.new_page()


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _rows(page) -> list[dict]:
    return page.eval_on_selector_all("tr.node", """rows => rows.map(row => ({
        index: row.dataset.nodeIndex, title: row.querySelector('.title').textContent,
        role: row.querySelector('.role').textContent, host: row.querySelector('.host').textContent,
        state: row.querySelector('.state').textContent, exit: row.querySelector('.exit-code').textContent,
        duration: row.querySelector('.duration').textContent}))""")


def test_job_page_names_and_links_in_a_real_browser(airflow_server, browser):
    server = airflow_server
    server.wait_for_dag(DAG_ID)
    try:
        server.request("POST", "/api/v2/variables", {"key": "job_page_token", "value": SECRET})
    except urllib.error.HTTPError as exc:
        assert exc.code == 409, exc  # made by an earlier test of this session
    run_id = server.trigger(DAG_ID, {"epochs": 20, "seconds": 1.0})
    page_path = f"/airflow-tf/jobs/{DAG_ID}/{urllib.parse.quote(run_id, safe='')}"

    def node_states():
        try:
            data = server.request("GET", page_path.replace("/jobs/", "/api/jobs/") + "?group=train")
        except (urllib.error.URLError, TimeoutError) as exc:  # a loaded machine: ask again
            return f"no answer: {exc}"
        return [node["state"] for job in data["jobs"] for node in job["nodes"]]

    # The ranks start together (a barrier on their TF_CONFIG ports), then train for 20 s.
    try:
        wait_until(lambda: node_states() == ["running"] * 3, 300, 0.5, what="the three nodes to run")
    except AssertionError as exc:
        tis = {f"{k[0]}[{k[1]}]": v["state"] for k, v in server.task_instances(DAG_ID, run_id).items()}
        raise AssertionError(f"{exc}: nodes {node_states()}, tasks {tis}") from None
    context, page = _page(browser, server, server.token)

    # While it runs: every node with its role and host, running, its last log lines.
    page.goto(server.base + page_path + "?group=train")
    try:
        page.wait_for_function("document.querySelectorAll('tr.node td.state-running').length === 3", timeout=15_000)
    except Exception as exc:
        raise AssertionError(f"page: {page.text_content('body')[:2000]!r}; API: {node_states()}") from exc
    rows = _rows(page)
    assert [(r["role"], r["host"], r["state"]) for r in rows] == [
        (f"worker {i}", "127.0.0.1", "running") for i in range(3)]
    assert [r["title"] for r in rows] == [f"node {i} · worker {i} @ 127.0.0.1" for i in range(3)]
    assert page.get_attribute("body", "data-state") == "running"
    page.wait_for_function("[...document.querySelectorAll('details.tail pre')].every(p => p.textContent.includes("
                           "'epoch'))", timeout=30_000)
    # Each node's generated TF_CONFIG, as its rank got it.
    envs = page.eval_on_selector_all("details.env pre", "pres => pres.map(p => p.textContent)")
    configs = [json.loads(line.partition("=")[2]) for text in envs for line in text.splitlines()
               if line.startswith("TF_CONFIG=")]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(len(c["cluster"]["worker"]) == 3 and c["cluster"] == configs[0]["cluster"] for c in configs)

    # The same page, left open, refreshes until the job has ended; then it stops.
    page.wait_for_function("document.body.dataset.state === 'ended'", timeout=240_000)
    rows = _rows(page)
    assert [(r["role"], r["host"], r["state"], r["exit"]) for r in rows] == [
        (f"worker {i}", "127.0.0.1", "exited", "0") for i in range(3)]
    assert all(r["duration"].endswith(" s") for r in rows)
    assert int(page.get_attribute("body", "data-refreshes")) > 2
    # The secret every rank printed last is masked on the page, as in the task log.
    tails = page.eval_on_selector_all("details.tail pre", "pres => pres.map(p => p.textContent)")
    assert all(f"rank {i}: token is ***" in tails[i] for i in range(3)), tails
    assert SECRET not in page.content()
    # The chief's metrics as curves: one chart per metric, a point per epoch.
    assert page.eval_on_selector_all("svg.chart", "charts => charts.map(c => c.dataset.metric)") == ["accuracy", "loss"]
    assert page.eval_on_selector_all("svg.chart[data-metric=loss] circle", "points => points.length") == 20
    refreshes = int(page.get_attribute("body", "data-refreshes"))
    page.wait_for_timeout(5_000)  # a refresh would come every 2 s: none does once ended
    assert int(page.get_attribute("body", "data-refreshes")) == refreshes
    wait_until(lambda: server.run_state(DAG_ID, run_id) == "success", 60, what="the run to succeed")

    # The DAG run's "Training job" tab in the Airflow UI shows the page in its frame.
    page.goto(f"{server.base}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}/plugin/airflow-tf-job-run")
    page.frame_locator("iframe").locator("tr.node td.state-exited").nth(2).wait_for(timeout=60_000)
    assert page.get_by_text("Training job", exact=True).count() == 1  # the tab itself

    # The launch tasks carry their node's name, in the API and on the UI's mapped-task list.
    tis = server.task_instances(DAG_ID, run_id)
    assert [tis[("train.launch", i)]["rendered_map_index"] for i in range(3)] == [
        f"node {i} · worker {i} @ 127.0.0.1" for i in range(3)]
    page.goto(f"{server.base}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}/tasks/train.launch/mapped")
    for i in range(3):
        page.get_by_text(f"node {i} · worker {i} @ 127.0.0.1").first.wait_for(timeout=30_000)

    # The wait task's extra links resolve: the page, the curves picture, the TensorBoard and outputs folders.
    links = server.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
                                  "/taskInstances/train.wait/links")["extra_links"]
    assert set(links) == {"Training job page", "Training curves", "TensorBoard logs", "Training outputs", "MLflow run"}
    assert links["MLflow run"] is None  # not tracked
    status, body = _get(links["Training job page"], server.token)
    assert status == 200 and b"airflow-tf training job" in body
    status, body = _get(links["Training curves"], server.token)
    assert status == 200 and body.startswith(b"\x89PNG")
    for name in ("TensorBoard logs", "Training outputs"):
        assert links[name].startswith("file:///")
        assert os.path.isdir(urllib.parse.urlsplit(links[name]).path), links[name]
    assert urllib.parse.urlsplit(links["TensorBoard logs"]).path.startswith(
        urllib.parse.urlsplit(links["Training outputs"]).path)
    context.close()

    # Nobody logged in: no page, no data, no picture (the per-DAG refusal of a logged-in user who
    # may not read the DAG: tests/integration/test_job_page_auth.py; standalone forces SimpleAuthManager).
    for path in (page_path, page_path.replace("/jobs/", "/api/jobs/"),
                 page_path.replace("/jobs/", "/api/jobs/") + "/curves.png?group=train"):
        assert _get(server.base + path, None)[0] == 401, path
    context, page = _page(browser, server, None)
    page.goto(server.base + page_path)
    assert "Not authenticated" in page.text_content("body") and not page.query_selector_all("tr.node")
    context.close()
