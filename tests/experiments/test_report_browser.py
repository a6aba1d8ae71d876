"""report.html in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver (nothing is downloaded: no browser, no driver), loads a finished run's report from
disk and must show it whole — zero console errors, every image decoded (complete, natural width
> 0), the results table with one row per policy of results.json, nothing requested from the
network — and a full-page screenshot is taken over the DevTools protocol.

The run is ``$SHOPSIM_REPORT_RUN`` (CI: the quickstart run of ``make readme-check``); without it a
tiny toy run is made here. ``SHOPSIM_SCREENSHOT=PATH`` also keeps the screenshot there (how
docs/report.png is made). Marked ``browser``: ``make test-browser`` (needs chromium and
chromium-driver: ``apt-get install chromium chromium-driver``, which ``.ci/run`` does).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopsim.tests.helpers import tiny_agents, tiny_toy_config

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# What a browser on a closed network needs to start quietly (no update, sync or metrics calls).
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("SHOPSIM_REPORT_RUN")
    if given:
        return Path(given)
    root = tmp_path_factory.mktemp("report")
    cfg = tiny_toy_config(
        agents=tiny_agents(["random", "popularity", "itemknn", "click_model_greedy", "ppo", "dqn"]),
        evaluation={"episodes": 40, "n_boot": 20, "offline": False},
    )
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SHOPSIM_REPORT_SESSIONS": "3"}
    cmd = [sys.executable, "-m", "shopsim.experiments.cli", "run", "tiny.yaml", "--out", "run"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "run"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    for exe in (CHROMIUM, CHROMEDRIVER):
        assert exe.is_file(), f"{exe}: not installed; apt-get install chromium chromium-driver (.ci/run does)"
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_report_renders_whole_in_headless_chromium(run: Path, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    report = run / "report.html"
    assert report.is_file(), f"{run}: no report.html"
    browser.execute_cdp_cmd("Network.enable", {})
    browser.get(report.resolve().as_uri())
    # every request the page made: only its own file and data: URIs (no network)
    entries = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [e for e in entries if not e.startswith(("data:", "file:"))] == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
    )
    assert len(images) >= 3  # policies, learning curves, fidelity plots
    assert [i for i in images if not (i[1] and i[2] > 0)] == []
    results = json.loads((run / "results.json").read_text())
    rows = browser.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
    assert sorted(r.get_attribute("data-policy") for r in rows) == sorted(results["policies"])
    assert len(rows) == len(results["policies"])
    assert browser.find_elements(By.CSS_SELECTOR, "script") == []
    # full page, over the DevTools protocol
    metrics = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 2600), "scale": 1},
        },
    )
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "report.png").write_bytes(png)
    keep = os.environ.get("SHOPSIM_SCREENSHOT")
    if keep:
        shutil.copyfile(tmp_path / "report.png", keep)
