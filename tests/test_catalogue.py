"""catalogue.engine (the local engine): outputs, resume after kill -9, bad files, shards, config, lock."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalogue_helpers import (GOOD, activation_rows, add_bad_files, assert_activation_rows_close, clip_rows, make_tree,
                               tree_digest)
from cnnaural_ext import Auraliser
from cnnaural_ext.catalogue import latest_states, read_manifest, read_rows, run_catalogue, status, track_id
from cnnaural_ext.catalogue.ledger import shard_lock
from cnnaural_ext.errors import CnnauralError

REPO = Path(__file__).resolve().parents[1]
REQUEST = dict(layers="1,5", features="top:2", duration=2.0, workers=0, progress=False)


@pytest.fixture(scope="module")
def aur(checkpoint):
    return Auraliser.from_checkpoint(checkpoint)


def test_small_tree_outputs_and_rows(tmp_path, aur):
    src = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    s = run_catalogue(src, out, auraliser=aur, **REQUEST)
    assert (s["ok"], s["error"], s["skipped"], s["tracks"], s["pending"]) == (len(GOOD), 0, 0, len(GOOD), 0)
    manifest = read_manifest(out)
    assert sorted(r["relative_path"] for r in manifest) == sorted(GOOD)
    assert all(r["id"] == track_id(r["relative_path"]) for r in manifest)
    assert all(r["size"] == (src / r["relative_path"]).stat().st_size for r in manifest)
    for rel in GOOD:  # three intro.* in different folders: three folders
        folder = out / "audio" / rel.rsplit(".", 1)[0]
        names = sorted(p.name for p in folder.iterdir())
        assert "original.flac" in names and "manifest.json" in names
        assert sum(n.startswith("layer1_feature") and n.endswith(".flac") for n in names) == 2
        assert sum(n.startswith("layer5_feature") for n in names) == 2
        assert not any(n.endswith(".png") for n in names)  # figures only when asked
        assert json.loads((folder / "manifest.json").read_text())["track"] == rel
    rows = read_rows(out)
    assert len(rows) == len(GOOD) and {r["status"] for r in rows} == {"ok"}
    cfg = json.loads((out / "config.json").read_text())
    assert {r["config"] for r in rows} == {cfg["fingerprint"]}
    assert all(r["part"] and (out / "activations" / r["part"]).is_file() for r in rows)
    n_feats = aur.deconvnet.n_features(1) + aur.deconvnet.n_features(5)
    assert len(activation_rows(out)) == len(GOOD) * n_feats
    assert cfg["config"]["layers"] == [1, 5] and cfg["config"]["audio_format"] == "flac"


def test_kill_then_resume_matches_uninterrupted_run(tmp_path, aur, checkpoint):
    good = {f"d{k % 3}/intro{'' if k < 3 else k}.wav": 2.0 + 0.1 * k for k in range(12)}
    src = make_tree(tmp_path / "src", good)
    opts = ["--layers", "1,5", "--features", "all", "--duration", "2"]
    ref = tmp_path / "ref"
    run_catalogue(src, ref, auraliser=aur, layers="1,5", features="all", duration=2.0, workers=0, progress=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cnnaural_ext", "catalogue", str(src), "--out", str(out), "--model", str(checkpoint),
           "--workers", "1", "--flush-every", "1", "--no-progress", *opts]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "ledger").is_dir() and sum(r["status"] == "ok" for r in read_rows(out)) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sum(r["status"] == "ok" for r in read_rows(out))
    assert 3 <= done < len(good)
    # the rerun continues with what was not ok
    rerun = run_catalogue(src, out, auraliser=aur, layers="1,5", features="all", duration=2.0, workers=0,
                          progress=False)
    assert (rerun["ok"], rerun["already_done"], rerun["error"]) == (len(good) - done, done, 0)
    rows = read_rows(out)
    ok_ids = [r["id"] for r in rows if r["status"] == "ok"]
    assert sorted(ok_ids) == sorted(track_id(rel) for rel in good)  # every track ok exactly once
    assert {r["status"] for r in latest_states(out).values()} == {"ok"}
    assert tree_digest(out / "audio") == tree_digest(ref / "audio")  # byte-identical FLAC, no leftovers
    assert activation_rows(out) == activation_rows(ref)
    assert clip_rows(out) == clip_rows(ref) and len(clip_rows(out)) == len(good) * (
        aur.deconvnet.n_features(1) + aur.deconvnet.n_features(5))
    third = run_catalogue(src, out, auraliser=aur, layers="1,5", features="all", duration=2.0, workers=0,
                          progress=False)
    assert (third["ok"], third["error"], third["skipped"], third["already_done"]) == (0, 0, 0, len(good))
    assert len(read_rows(out)) == len(rows)


def test_bad_files_are_one_row_each(tmp_path, aur):
    src = make_tree(tmp_path / "src", {"a/intro.wav": 2.5, "b/intro.wav": 2.0})
    kinds = add_bad_files(src)
    out = tmp_path / "out"
    s = run_catalogue(src, out, auraliser=aur, **REQUEST)
    assert (s["ok"], s["error"], s["skipped"]) == (2, 4, 2)
    rows = read_rows(out)
    assert len(rows) == len(kinds) + 2
    by_rel = {r["relative_path"]: r for r in rows}
    for rel, kind in kinds.items():
        assert by_rel[rel]["status"] == kind, by_rel[rel]
        assert by_rel[rel]["message"]
    assert "silent" in by_rel["bad/silent.wav"]["message"]
    assert "too short" in by_rel["bad/short.wav"]["message"]
    assert by_rel["bad/corrupt.wav"]["error_type"] == "CnnauralError"
    assert not (out / "audio" / "bad").exists()
    assert {r["relative_path"] for r in activation_rows(out)} == {"a/intro.wav", "b/intro.wav"}
    # a rerun skips the errors (counted), --retry-failed retries them (and they fail again)
    again = run_catalogue(src, out, auraliser=aur, **REQUEST)
    assert (again["ok"], again["error"], again["earlier_errors"], again["already_done"]) == (0, 0, 4, 4)
    retry = run_catalogue(src, out, auraliser=aur, retry_failed=True, **REQUEST)
    assert (retry["ok"], retry["error"], retry["already_done"]) == (0, 4, 4)


def test_max_failures_stops_early(tmp_path, aur):
    src = make_tree(tmp_path / "src", {"z/late.wav": 2.0})
    add_bad_files(src)
    s = run_catalogue(src, tmp_path / "out", auraliser=aur, max_failures=2, **REQUEST)
    assert s["stopped_early"] and s["error"] == 2 and s["pending"] > 0
    assert status(tmp_path / "out")["counts"]["pending"] == s["pending"]


def test_shards_are_disjoint_and_complete(tmp_path, aur):
    src = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    seen = []
    for i in range(3):
        s = run_catalogue(src, out, auraliser=aur, shard=f"{i}/3", **REQUEST)
        seen.append({r["id"] for r in read_rows(out) if r["run"] == s["run"]})
        assert s["ok"] == s["tracks"] == len(seen[-1])
    assert sum(len(x) for x in seen) == len(GOOD)
    assert set().union(*seen) == {track_id(rel) for rel in GOOD}
    st = status(out)
    assert st["counts"] == {"ok": len(GOOD), "error": 0, "skipped": 0, "pending": 0}
    assert sorted(st["shards"]) == ["0/3", "1/3", "2/3"]
    assert [c["ok"] for c in st["shards"].values()] == [len(x) for x in seen]


def test_changed_config_is_refused(tmp_path, aur):
    src = make_tree(tmp_path / "src", {"a.wav": 2.0})
    out = tmp_path / "out"
    run_catalogue(src, out, auraliser=aur, **REQUEST)
    before = tree_digest(out)
    for change, what in [(dict(layers="1"), "layers"), (dict(features="all"), "features"),
                         (dict(offset=0.5), "offset"), (dict(audio_format="wav"), "audio_format"),
                         (dict(window=2.0), "window")]:
        with pytest.raises(CnnauralError, match=f"another config.*{what}.*new --out"):
            run_catalogue(src, out, auraliser=aur, **{**REQUEST, **change})
    other = Auraliser.from_checkpoint(aur.source)
    other.spectrogram.hop_length = 64
    with pytest.raises(CnnauralError, match="spectrogram: hop_length differ"):
        run_catalogue(src, out, auraliser=other, **REQUEST)
    after = tree_digest(out)
    assert {k: v for k, v in after.items() if not k.startswith("locks/")} == \
        {k: v for k, v in before.items() if not k.startswith("locks/")}


def test_lock_refuses_a_concurrent_run_on_the_same_shard(tmp_path, aur):
    src = make_tree(tmp_path / "src", {"a.wav": 2.0, "b.wav": 2.0})
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from cnnaural_ext.catalogue.ledger import shard_lock; "
        f"lock = shard_lock({str(out)!r}, (0, 1)).acquire(); print('held', flush=True); time.sleep(60)")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CnnauralError, match=r"shard 0/1 is in use by another catalogue run \(pid"):
            run_catalogue(src, out, auraliser=aur, **REQUEST)
        s = run_catalogue(src, out, auraliser=aur, shard="1/2", **REQUEST)  # another shard runs alongside
        assert s["error"] == 0
    finally:
        holder.kill()
        holder.wait()
    with shard_lock(out, (0, 1)):  # a killed holder leaves nothing locked
        pass
    assert run_catalogue(src, out, auraliser=aur, **REQUEST)["error"] == 0


def test_batches_of_tracks_write_what_batch_one_writes(tmp_path, aur, monkeypatch):
    """--batch-size 4 over tracks of several excerpt lengths and bad files: the same rows and states
    as batch 1, the same activation table (the whole-track pass is per track), the clips equal up to
    float rounding; a batch that fails is redone track by track (then byte-identical)."""
    import soundfile as sf

    good = dict(GOOD, **{"d/short.wav": 1.5, "d/shorter.wav": 1.2})  # excerpts shorter than 2 s: own batches
    src = make_tree(tmp_path / "src", good)
    bad = add_bad_files(src)
    one = run_catalogue(src, tmp_path / "one", auraliser=aur, **REQUEST)
    sizes, batched = [], Auraliser.auralise_batch

    def spy(self, waves, *args, **kwargs):
        sizes.append(len(waves))
        return batched(self, waves, *args, **kwargs)

    monkeypatch.setattr(Auraliser, "auralise_batch", spy)
    four = run_catalogue(src, tmp_path / "four", auraliser=aur, batch_size=4, **REQUEST)
    assert sizes and max(sizes) > 1 and all(n <= 4 for n in sizes)  # batches of several tracks, at most 4
    assert (four["ok"], four["error"], four["skipped"]) == (one["ok"], one["error"], one["skipped"]) == (
        len(good), 4, 2)
    assert {bad_rel: latest_by_path(tmp_path / "four")[bad_rel] for bad_rel in bad} == bad
    # the same rows; a track no longer than its excerpt takes its rows from the (batched) forward pass
    assert_activation_rows_close(activation_rows(tmp_path / "four"), activation_rows(tmp_path / "one"))
    a, b = clip_rows(tmp_path / "four"), clip_rows(tmp_path / "one")
    assert [(r["id"], r["layer"], r["feature"], r["audio"]) for r in a] == [
        (r["id"], r["layer"], r["feature"], r["audio"]) for r in b]
    for x, y in zip(a, b):
        assert x["spectral_convergence"] == pytest.approx(y["spectral_convergence"], rel=1e-4, abs=1e-6)
    assert tree_digest(tmp_path / "four" / "audio").keys() == tree_digest(tmp_path / "one" / "audio").keys()
    for path in sorted((tmp_path / "one" / "audio").rglob("*.flac")):
        ref, _ = sf.read(path)
        got, _ = sf.read(tmp_path / "four" / path.relative_to(tmp_path / "one"))
        assert abs(got - ref).max() <= 2 / 32768, path  # 16-bit clips: at most a rounding step or two

    def fail(*args, **kwargs):
        raise RuntimeError("a batch that fails")

    monkeypatch.setattr(Auraliser, "auralise_batch", fail)
    again = run_catalogue(src, tmp_path / "fallback", auraliser=aur, batch_size=4, **REQUEST)
    assert (again["ok"], again["error"]) == (one["ok"], one["error"])
    assert tree_digest(tmp_path / "fallback" / "audio") == tree_digest(tmp_path / "one" / "audio")


def latest_by_path(out) -> dict:
    return {r["relative_path"]: r["status"] for r in latest_states(out).values()}
