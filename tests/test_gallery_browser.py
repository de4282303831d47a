"""The listening gallery in a real headless browser (Debian chromium + chromium-driver, installed
by scripts/install_browser.sh): it loads without console errors, every image (the figure and
analysis sections' included) loads, every audio element has a source the browser can play, and
names from user data (a track, a class folder) show as text."""
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import soundfile as sf

from cnnaural_ext import cli
from helpers import EVIL_CLASS, SR, tone

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
EVIL = "<img src=x onerror=alert(1)> & co.wav"  # markup in a track name must show as text


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium / chromedriver not installed "
                                 "(scripts/install_browser.sh)")]


@pytest.fixture
def gallery(checkpoint, corpus, fake_prelude, tmp_path):
    sf.write(tmp_path / EVIL, tone(2.5).numpy(), SR)
    out = tmp_path / "site"
    assert cli.main(["report", str(tmp_path / EVIL), "--model", str(checkpoint), "--layers", "1,5", "--features", "0,1",
                     "--duration", "2", "--out", str(out), "--figures", "--onset-duration", "6",
                     "--data", str(corpus), "--split", "all", "--cache-dir", str(tmp_path / "cache")]) == 0
    handler = partial(QuietHandler, directory=str(out))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


def test_gallery_loads_images_and_playable_audio(gallery, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(gallery)
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return Array.from(document.images).every(i => i.complete)"))
        images = driver.execute_script("return Array.from(document.images).map(i => [i.src, i.naturalWidth])")
        # per track 2 layers x 2 features + 2 layer figures; Figure 2, Figure 3, the selectivity heat map
        assert len(images) == 2 * 2 + 2 + 3 and all(w > 0 for _, w in images), images
        # load every clip and wait until the browser has decoded its metadata (or failed)
        driver.execute_script("document.querySelectorAll('audio').forEach(a => { a.preload = 'auto'; a.load(); })")
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1 || a.error)"))
        audio = driver.execute_script("return Array.from(document.querySelectorAll('audio')).map("
                                      "a => [a.currentSrc, a.error && a.error.code, a.duration])")
        assert len(audio) == 1 + 2 * 2 + 2  # + BWV 846 original and its best onset feature
        for src, err, duration in audio:
            assert err is None and duration == pytest.approx(2.0, abs=0.05), (src, err, duration)
        assert driver.find_element("tag name", "h2").text == EVIL  # shown as text; no injected image above
        headers = driver.execute_script("return Array.from(document.querySelectorAll('th')).map(t => t.textContent)")
        assert EVIL_CLASS in headers  # a class folder's name is a table header's text
        assert driver.execute_script("return document.querySelectorAll('section table tbody tr').length") > 8
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
