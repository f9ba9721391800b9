"""The HTML report in a real headless browser (Debian's chromium driven by selenium): it loads from
the file, the leaderboard shows the API's order, moving a weight re-ranks as the API computes, and
the item view shows each step beside the reference model's. Screenshots go to build/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from tests.analysis.test_board import _task
from tests.conftest import REPO
from tests.support.browser import SHOTS, needs_chromium, open_browser

pytest.importorskip("selenium.webdriver")
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser():
    yield from open_browser()


def _css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _board(driver) -> list[str]:
    return [td.text for td in _css(driver, "#board tbody tr td:nth-child(2)")]


def _report(task_id: str, out: Path, *args: str) -> Path:
    result = CliRunner().invoke(main, ["report", task_id, "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


def test_the_report_ranks_reweights_and_shows_steps(ray_cluster, browser, tmp_path):
    task_id = rayeval.run(_task(tmp_path, reference_model="r")).task_id
    page = _report(task_id, tmp_path / "report.html")
    assert "http://" not in page.read_text() and "https://" not in page.read_text()  # nothing to fetch
    browser.get(page.as_uri())
    assert browser.title == f"rayeval report: {task_id}"
    assert _board(browser) == [s.model for s in rayeval.results(task_id).leaderboard] == ["q", "p", "r"]
    browser.save_screenshot(str(SHOTS / "report-leaderboard.png"))

    (weight,) = [el for el in _css(browser, "#weights input") if el.get_attribute("data-name") == "a"]
    weight.clear()
    weight.send_keys("3")
    assert _board(browser) == [s.model for s in rayeval.results(task_id, weights="a=3").leaderboard] == ["p", "q", "r"]
    shown = {tr.find_elements("css selector", "td")[1].text: tr.find_elements("css selector", "td")[2].text
             for tr in _css(browser, "#board tbody tr")}  # fmt: skip
    expected = {s.model: f"{s.score:.4f}" for s in rayeval.results(task_id, weights="a=3").leaderboard}
    assert shown == expected
    browser.save_screenshot(str(SHOTS / "report-reweighted.png"))

    _css(browser, 'nav button[data-view="items"]')[0].click()
    model = _css(browser, "#f-model")[0]
    assert [o.text for o in model.find_elements("css selector", "option")] == ["p", "q"]  # r is the reference
    _css(browser, "#f-disagree")[0].click()
    listed = [el.get_attribute("data-id") for el in _css(browser, "#itemlist > div")]
    assert listed == [f"a{i}" for i in range(10, 18)]  # p right on a0-a17, r on a0-a9
    _css(browser, "#itemlist > div")[0].click()
    columns = _css(browser, "#itemview .steps > div")
    assert len(columns) == 2 and "reference r" in columns[1].text
    names = [h.text for h in columns[0].find_elements("css selector", ".step h4")]
    assert names[:3] == ["query", "prompt sent", "response"] and "exact_match: score exact_match" in names
    assert "yes" in columns[0].text and "no" in columns[1].text
    browser.save_screenshot(str(SHOTS / "report-item.png"))
    _css(browser, "#f-disagree")[0].click()
    _css(browser, "#f-errors")[0].click()
    assert _css(browser, "#itemlist > div") == []

    _css(browser, 'nav button[data-view="comparison"]')[0].click()
    rows = [tr.text for tr in _css(browser, "#cmp tbody tr")]
    assert any(r.startswith("p a exact_match 8 0 12") for r in rows)


def test_the_item_browser_searches_and_its_filters_see_past_the_sample(ray_cluster, browser, tmp_path):
    """With 5 items per set in the page, the lowest scores (p is wrong on a18 and a19 only) are held too, the
    search finds items by id or query, a filter that hides the open item closes it, and the interval chart
    has an axis."""
    task_id = rayeval.run(_task(tmp_path, reference_model="r")).task_id
    page = _report(task_id, tmp_path / "report.html", "--items", "5")
    browser.get(page.as_uri())
    ticks = [t.text for t in _css(browser, "#chart text.tick")]
    assert ticks == ["0", "0.25", "0.5", "0.75", "1"]
    _css(browser, 'nav button[data-view="items"]')[0].click()
    _css(browser, "#f-lowest")[0].click()
    listed = [el.get_attribute("data-id") for el in _css(browser, "#itemlist > div")]
    assert sorted(listed[:2]) == ["a18", "a19"]  # not among the first 5 stored
    count = _css(browser, "#f-count")[0].text
    assert "of 20: the first 5, every item with an error, and each model's 5 lowest scores per metric" in count
    assert _css(browser, "#itemlist > div .q")[0].text in ("q18?", "q19?")  # each item's query, previewed
    search = _css(browser, "#f-search")[0]
    search.send_keys("q19")
    assert [el.get_attribute("data-id") for el in _css(browser, "#itemlist > div")] == ["a19"]
    _css(browser, "#itemlist > div")[0].click()
    assert "a / a19" in _css(browser, "#itemview h2")[0].text
    search.clear()
    search.send_keys("a0")  # hides a19: its view closes
    assert _css(browser, "#itemview h2") == []
    assert {el.get_attribute("data-id") for el in _css(browser, "#itemlist > div")} == {"a0"}
    browser.save_screenshot(str(SHOTS / "report-search.png"))


def test_the_gsm8k_report_renders(ray_cluster, browser, gsm8k_predictions, tmp_path):
    from rayeval.spec import load_task

    spec = load_task(REPO / "examples" / "gsm8k-eval-only.yaml")
    spec = spec.model_copy(update={"output": str(tmp_path / "out"), "reference_model": "gpt3-6b-finetuning"})
    task_id = rayeval.run(spec).task_id
    page = _report(task_id, tmp_path / "gsm8k.html", "--items", "50")
    browser.get(page.as_uri())
    results = rayeval.results(task_id)
    assert _board(browser) == [s.model for s in results.leaderboard]
    cis = [td.text for td in _css(browser, "#board tbody tr td:nth-child(4)")]
    assert cis == [f"{s.ci_low:.4f} – {s.ci_high:.4f}" for s in results.leaderboard]
    assert len(_css(browser, "#chart rect")) == 4
    browser.save_screenshot(str(SHOTS / "report-gsm8k.png"))


def test_the_ui_serves_the_tasks_and_their_reports(ray_cluster, browser, tmp_path):
    import httpx

    from rayeval.serve_apps.ui import start_ui, stop_ui

    task_id = rayeval.run(_task(tmp_path, reference_model="r")).task_id
    url = start_ui()
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/rayeval/")
        tasks = httpx.get(url + "api/tasks", timeout=30).json()
        mine = next(t for t in tasks if t["task_id"] == task_id)
        assert mine["state"] == "succeeded" and mine["progress"] == 1.0
        index = httpx.get(url, timeout=30)
        assert index.status_code == 200 and task_id in index.text and "succeeded" in index.text
        assert httpx.get(url + "task/no-such-task", timeout=30).status_code == 404

        browser.get(url)
        link = [a for a in _css(browser, "#tasks a") if a.text == task_id]
        link[0].click()
        assert browser.title == f"rayeval report: {task_id}"
        assert _board(browser) == [s.model for s in rayeval.results(task_id).leaderboard]
        browser.save_screenshot(str(SHOTS / "ui-task.png"))
    finally:
        stop_ui()


def test_the_ui_shows_a_running_tasks_progress(ray_cluster, stub_server, tmp_path):
    import time

    import httpx

    from rayeval.serve_apps.ui import start_ui, stop_ui
    from tests.support.tasks import inference_task, write_items

    server = stub_server(latency=0.05)
    data = write_items(tmp_path / "items.jsonl", 320)  # answers are reported by blocks of 64
    task = inference_task(
        data, tmp_path / "out", [{"name": "m", "url": server.url, "model": "stub-model"}], name="slow"
    )
    task["parameters"] = {"MAX_CONCURRENCY": 2}
    task["reuse"] = False
    url = start_ui()
    handle = rayeval.run(task, wait=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            rows = {t["task_id"]: t for t in httpx.get(url + "api/tasks", timeout=30).json()}
            row = rows.get(handle.task_id)
            if row and row["state"] == "running" and 0 < row["progress"] < 1:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.3)
        page = httpx.get(url, timeout=30).text
        assert 'http-equiv="refresh"' in page and handle.task_id in page and "running" in page and "done" in page
    finally:
        rayeval.stop(handle.task_id, wait=60)
        stop_ui()
