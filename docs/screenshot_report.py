"""Screenshot the HTML report of a model for the README, in headless chromium (make chromium).

Usage: python docs/screenshot_report.py resnet50 docs/img/report.png
It writes ``resnet-inspect report MODEL`` into a scratch directory, opens it with the same flags as
tests/test_report.py, clicks block ``layer2.0`` so its explanation shows, and saves the window.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,900")
CLICK = "layer2.0"


def screenshot(model: str, out: Path) -> None:
    """Write the report of ``model`` and save a screenshot of it to ``out``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as scratch:
        page = Path(scratch) / "report.html"
        subprocess.run([sys.executable, "-m", "resnet_inspect", "report", model, "-o", str(page)], check=True)
        options = webdriver.ChromeOptions()
        for flag in (*FLAGS, f"--user-data-dir={Path(scratch) / 'profile'}"):
            options.add_argument(flag)
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser:
            options.binary_location = browser
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        try:
            driver.get(page.as_uri())
            node = driver.find_element(By.XPATH, "//*[local-name()='g'][contains(@class,'node')]"
                                                 f"[*[local-name()='title'][text()='{CLICK}']]")
            driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}));"
                                  "window.scrollTo(0, 0);", node)
            driver.save_screenshot(str(out))
        finally:
            driver.quit()


if __name__ == "__main__":
    screenshot(sys.argv[1], Path(sys.argv[2]))
