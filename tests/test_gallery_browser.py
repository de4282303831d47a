"""The listening gallery and the feature atlas in a real headless browser (Debian chromium +
chromium-driver, installed by scripts/install_browser.sh): they load without console errors,
every image (the figure and analysis sections' included) loads, every audio element has a source
the browser can play, and names from user data (a track, a class folder) show as text."""
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
    server, url = serve(out)
    yield url + "index.html"
    server.shutdown()


def serve(folder):
    """An HTTP server of `folder` on a free local port: (server, base URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def chrome(tmp_path):
    """A headless Chromium driver that keeps the browser console's log."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def loaded_media(driver):
    """Load every image (lazy ones too) and every clip; returns ([(src, naturalWidth)],
    [(currentSrc, error code, duration)]) once the browser has them (or failed)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });")
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return Array.from(document.images).every(i => i.complete)"))
    images = driver.execute_script("return Array.from(document.images).map(i => [i.src, i.naturalWidth])")
    driver.execute_script("document.querySelectorAll('audio').forEach(a => { a.preload = 'auto'; a.load(); })")
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1 || a.error)"))
    audio = driver.execute_script("return Array.from(document.querySelectorAll('audio')).map("
                                  "a => [a.currentSrc, a.error && a.error.code, a.duration])")
    return images, audio


def test_gallery_loads_images_and_playable_audio(gallery, tmp_path):
    driver = chrome(tmp_path)
    try:
        driver.get(gallery)
        images, audio = loaded_media(driver)
        # per track 2 layers x 2 features + 2 layer figures; Figure 2, Figure 3, the selectivity heat map
        assert len(images) == 2 * 2 + 2 + 3 and all(w > 0 for _, w in images), images
        assert len(audio) == 1 + 2 * 2 + 2  # + BWV 846 original and its best onset feature
        for src, err, duration in audio:
            assert err is None and duration == pytest.approx(2.0, abs=0.05), (src, err, duration)
        assert driver.find_element("tag name", "h2").text == EVIL  # shown as text; no injected image above
        headers = driver.execute_script("return Array.from(document.querySelectorAll('th')).map(t => t.textContent)")
        assert EVIL_CLASS in headers  # a class folder's name is a table header's text
        assert driver.execute_script("return document.querySelectorAll('section table tbody tr').length") > 8
        # every clip's card says how far the clip is from its map (quality.spectral_convergence)
        lines = driver.execute_script(
            "return Array.from(document.querySelectorAll('.stats.inversion')).map(d => d.textContent)")
        assert len(lines) == 2 * 2 and all(t.startswith("inversion: spectral convergence ") for t in lines), lines
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


@pytest.fixture
def atlas(checkpoint, tmp_path):
    """The feature atlas of a 3-track catalogue in two class folders, one named with markup, one
    track named with markup: layer 1 (4 features), the top track of each."""
    from cnnaural_ext.catalogue import run_catalogue

    src = tmp_path / "src"
    for rel, seconds in [(f"{EVIL_CLASS}/{EVIL}", 5.0), ("quiet/a.wav", 2.5), ("quiet/b.wav", 3.0)]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(src / rel, tone(seconds).numpy(), SR)
    out = tmp_path / "cat"
    run_catalogue(src, out, model=checkpoint, layers="1", features="top:1", duration=2.0, window=2.0, workers=0,
                  progress=False)
    assert cli.main(["atlas", str(out), "--top", "1", "--src", str(src), "--no-progress"]) == 0
    server, url = serve(out / "atlas")
    yield url
    server.shutdown()


def test_atlas_loads_images_and_playable_audio(atlas, tmp_path):
    driver = chrome(tmp_path)
    try:
        driver.get(atlas + "index.html")
        links = driver.execute_script("return Array.from(document.querySelectorAll('h2 a')).map(a => a.href)")
        assert links == [atlas + "layer1.html"]
        assert EVIL_CLASS in driver.find_element("tag name", "body").text  # the class folders, as text
        driver.get(links[0])
        images, audio = loaded_media(driver)
        n_windows = len(driver.find_elements("css selector", ".card.track"))
        assert n_windows >= 3
        # a histogram per feature and a map per window
        assert len(images) == 4 + n_windows and all(w > 0 for _, w in images), images
        assert len(audio) == 2 * n_windows  # the original window and the feature
        for src, err, duration in audio:
            assert err is None and duration == pytest.approx(2.0, abs=0.05), (src, err, duration)
        paths = driver.execute_script("return Array.from(document.querySelectorAll('.path')).map(p => p.textContent)")
        assert f"{EVIL_CLASS}/{EVIL}" in paths  # the track, as text; no injected element
        assert not driver.find_elements("css selector", "img[src='x'], em")
        assert driver.execute_script("return document.querySelectorAll('section table tbody tr').length") == 4 * 2
        lines = driver.execute_script(
            "return Array.from(document.querySelectorAll('.stats.inversion')).map(d => d.textContent)")
        assert len(lines) == n_windows and all(t.startswith("inversion: spectral convergence ") for t in lines), lines
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
