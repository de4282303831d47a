"""catalogue.ray_engine: the Ray engine writes what the local engine writes (same files, same bytes,
same rows up to order), bad files are error rows under Ray too, and a catalogue started with the
local engine continues with Ray.

One Ray start for the module: every Ray run happens in one subprocess (`RAY_SCRIPT`, under a
timeout), and the tests compare its catalogues with local ones made here.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from catalogue_helpers import (GOOD, activation_rows, add_bad_files, assert_activation_rows_close, clip_rows, make_tree,
                               tree_digest)
from cnnaural_ext import Auraliser
from cnnaural_ext.catalogue import latest_states, read_rows, run_catalogue
from cnnaural_ext.errors import CnnauralError

REPO = Path(__file__).resolve().parents[1]
REQUEST = dict(layers="1,5", features="top:2", duration=2.0, progress=False)
RAY_TIMEOUT = 300

RAY_SCRIPT = """
import json, sys
import ray
from cnnaural_ext import Auraliser
from cnnaural_ext.catalogue import run_catalogue

ckpt, jobs = sys.argv[1], json.loads(sys.argv[2])
ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
aur = Auraliser.from_checkpoint(ckpt)
out = {}
for name, (src, dst, kw) in jobs.items():
    out[name] = run_catalogue(src, dst, auraliser=aur, engine="ray", **kw)
ray.shutdown()
print("RESULT " + json.dumps(out))
"""


def ledger_rows(out) -> list:
    """The ledger rows without what differs between runs (run, part, seconds, time), sorted."""
    keep = ("id", "relative_path", "status", "error_type", "message", "config")
    return sorted((tuple(r[k] for k in keep) for r in read_rows(out)), key=lambda r: (r[0], r[2]))


def durable_files(out) -> dict:
    """Every file of a catalogue but the ledger, the activation and clip parts (named by run) and the locks."""
    return {k: v for k, v in tree_digest(out).items()
            if not k.startswith(("ledger/", "activations/", "clips/", "locks/"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, checkpoint):
    """Local catalogues made here and Ray catalogues made by one subprocess, of three trees."""
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("ray_catalogue")
    aur = Auraliser.from_checkpoint(checkpoint)
    same = make_tree(root / "same")
    bad = make_tree(root / "bad", {"a/intro.wav": 2.5, "b/intro.wav": 2.0})
    add_bad_files(bad)
    resume = make_tree(root / "resume_src")
    (resume / "b/b0.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    local = {"same": run_catalogue(same, root / "same_local", auraliser=aur, workers=0, **REQUEST),
             "resume_ref": run_catalogue(resume, root / "resume_ref", auraliser=aur, workers=0, **REQUEST),
             "resume_first": run_catalogue(resume, root / "resume_out", auraliser=aur, workers=0, max_failures=1,
                                           **REQUEST)}
    # one actor computes with this process's torch threads, as the local engine does: the same bytes
    jobs = {"same": [str(same), str(root / "same_ray"), dict(REQUEST, workers=1)],
            "bad": [str(bad), str(root / "bad_ray"), REQUEST],
            "resume": [str(resume), str(root / "resume_out"), dict(REQUEST, workers=1)],
            "batched": [str(same), str(root / "same_ray_batched"), dict(REQUEST, workers=1, batch_size=4)]}
    proc = subprocess.run([sys.executable, "-c", RAY_SCRIPT, str(checkpoint), json.dumps(jobs)], cwd=REPO,
                          capture_output=True, text=True, timeout=RAY_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return {"root": root, "aur": aur, "local": local, "ray": json.loads(line[len("RESULT "):])}


@pytest.mark.ray
def test_ray_and_local_write_the_same_files_and_rows(runs):
    root, s = runs["root"], runs["ray"]["same"]
    assert (s["engine"], s["ok"], s["error"], s["skipped"], s["pending"]) == ("ray", len(GOOD), 0, 0, 0)
    local, ray = root / "same_local", root / "same_ray"
    assert durable_files(ray) == durable_files(local)  # audio, manifests, config.json: the same bytes
    assert len([k for k in durable_files(ray) if k.endswith(".flac")]) == len(GOOD) * 5
    assert ledger_rows(ray) == ledger_rows(local)
    assert activation_rows(ray) == activation_rows(local)
    assert clip_rows(ray) == clip_rows(local) and len(clip_rows(ray)) == len(GOOD) * 4
    assert all(r["part"] and (ray / "activations" / r["part"]).is_file() for r in read_rows(ray))


@pytest.mark.ray
def test_ray_batches_tracks_like_the_local_engine(runs):
    """--batch-size 4 on Ray: every track ok, the activation table and the clips of the local run up
    to float rounding (which tracks share a batch may differ from the local engine's)."""
    root, s = runs["root"], runs["ray"]["batched"]
    assert (s["ok"], s["error"], s["skipped"], s["pending"]) == (len(GOOD), 0, 0, 0)
    local, ray = root / "same_local", root / "same_ray_batched"
    assert durable_files(ray).keys() == durable_files(local).keys()
    assert_activation_rows_close(activation_rows(ray), activation_rows(local))
    a, b = clip_rows(ray), clip_rows(local)
    assert [(r["id"], r["layer"], r["feature"]) for r in a] == [(r["id"], r["layer"], r["feature"]) for r in b]
    assert all(x["spectral_convergence"] == pytest.approx(y["spectral_convergence"], rel=1e-4, abs=1e-6)
               for x, y in zip(a, b))


@pytest.mark.ray
def test_ray_turns_bad_files_into_rows(runs):
    s, out = runs["ray"]["bad"], runs["root"] / "bad_ray"
    assert (s["ok"], s["error"], s["skipped"]) == (2, 4, 2)
    by_rel = {r["relative_path"]: r for r in read_rows(out)}
    assert by_rel["bad/corrupt.wav"]["error_type"] == "CnnauralError"
    assert by_rel["bad/empty.ogg"]["status"] == "error" and by_rel["bad/notes.mp3"]["status"] == "error"
    assert "silent" in by_rel["bad/silent.wav"]["message"] and "too short" in by_rel["bad/short.wav"]["message"]
    assert {r["relative_path"] for r in activation_rows(out)} == {"a/intro.wav", "b/intro.wav"}


@pytest.mark.ray
def test_a_local_catalogue_continues_with_ray(runs):
    root, first, second = runs["root"], runs["local"]["resume_first"], runs["ray"]["resume"]
    assert first["stopped_early"] and (first["ok"], first["error"]) == (2, 1)
    assert (second["ok"], second["already_done"], second["earlier_errors"]) == (len(GOOD) - 2, 2, 1)
    out, ref = root / "resume_out", root / "resume_ref"
    assert tree_digest(out / "audio") == tree_digest(ref / "audio")
    assert activation_rows(out) == activation_rows(ref)
    assert sorted(r["status"] for r in latest_states(out).values()) == \
        sorted(r["status"] for r in latest_states(ref).values())
    assert sum(r["status"] == "ok" for r in read_rows(out)) == len(GOOD)  # every track ok exactly once
    third = run_catalogue(root / "resume_src", out, auraliser=runs["aur"], workers=0, **REQUEST)
    assert (third["ok"], third["error"], third["already_done"]) == (0, 0, len(GOOD))


def test_missing_ray_is_one_clear_error(tmp_path, checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    src = make_tree(tmp_path / "src", {"a.wav": 2.0})
    with pytest.raises(CnnauralError, match=r"pip install cnnaural_ext\[ray\]"):
        run_catalogue(src, tmp_path / "out", model=checkpoint, engine="ray", **REQUEST)
    assert not (tmp_path / "out").exists() or not (tmp_path / "out" / "ledger").exists()
    with pytest.raises(CnnauralError, match="--ray-address needs --engine ray"):
        run_catalogue(src, tmp_path / "out", model=checkpoint, ray_address="127.0.0.1:6379", **REQUEST)
