"""catalogue.workers (the local engine's worker processes): the same bytes as one process, a worker
that dies, a model the workers cannot rebuild, no worker outliving its run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalogue_helpers import GOOD, activation_rows, add_bad_files, clip_rows, make_tree, tree_digest
from cnnaural_ext import Auraliser
from cnnaural_ext.catalogue import engine, latest_states, read_rows, run_catalogue
from cnnaural_ext.errors import CnnauralError

REPO = Path(__file__).resolve().parents[1]
REQUEST = dict(layers="1,5", features="top:2", duration=2.0, progress=False)


@pytest.fixture(scope="module")
def aur(checkpoint):
    return Auraliser.from_checkpoint(checkpoint)


def states(out) -> dict:
    return {r["relative_path"]: (r["status"], r["error_type"]) for r in latest_states(out).values()}


def test_workers_write_what_one_process_writes(tmp_path, aur, one_thread):
    """Two workers (one torch thread each) against everything in this process on one thread:
    byte-identical clips, the same activation and clip rows, the same rows for bad files."""
    src = make_tree(tmp_path / "src")
    add_bad_files(src)
    here = run_catalogue(src, tmp_path / "here", auraliser=aur, workers=0, **REQUEST)
    two = run_catalogue(src, tmp_path / "two", auraliser=aur, workers=2, **REQUEST)
    assert (two["ok"], two["error"], two["skipped"]) == (here["ok"], here["error"], here["skipped"]) == (
        len(GOOD), 4, 2)
    assert two["timing"]["decode"] > 0 and here["timing"]["decode"] == 0  # two: the workers decoded
    assert states(tmp_path / "two") == states(tmp_path / "here")
    assert tree_digest(tmp_path / "two" / "audio") == tree_digest(tmp_path / "here" / "audio")
    assert activation_rows(tmp_path / "two") == activation_rows(tmp_path / "here")
    assert clip_rows(tmp_path / "two") == clip_rows(tmp_path / "here")


def test_a_worker_that_dies_costs_its_track_only(tmp_path, aur, monkeypatch):
    from catalogue_helpers import crashing_process_files

    good = {"a.wav": 2.0, "b/crash.wav": 2.0, "c.wav": 2.2, "d.wav": 2.4}
    src = make_tree(tmp_path / "src", good)
    monkeypatch.setattr(engine, "process_files", crashing_process_files)
    s = run_catalogue(src, tmp_path / "out", auraliser=aur, workers=2, **REQUEST)
    assert (s["ok"], s["error"]) == (3, 1)
    st = states(tmp_path / "out")
    assert st.pop("b/crash.wav") == ("error", "DecoderCrash")
    assert set(st.values()) == {("ok", None)}
    assert len(read_rows(tmp_path / "out")) == len(good)  # one row per track: none twice


def test_a_model_from_no_file_is_computed_here(tmp_path, checkpoint):
    from helpers import small_model_and_spec

    model, spec = small_model_and_spec()
    made = Auraliser(model, spec)  # no checkpoint: workers cannot rebuild it
    src = make_tree(tmp_path / "src", {"a.wav": 2.0})
    s = run_catalogue(src, tmp_path / "out", auraliser=made, workers=2, **REQUEST)
    assert s["ok"] == 1 and s["timing"]["decode"] == 0


def test_weights_changed_after_loading_are_refused(tmp_path, checkpoint):
    import torch

    changed = Auraliser.from_checkpoint(checkpoint)
    with torch.no_grad():
        next(changed.model.parameters()).mul_(2)
    src = make_tree(tmp_path / "src", {"a.wav": 2.0})
    with pytest.raises(CnnauralError, match="weights differ from its checkpoint"):
        run_catalogue(src, tmp_path / "out", auraliser=changed, workers=1, **REQUEST)


def children(pid: int) -> set:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_their_run_is_killed(tmp_path, checkpoint):
    good = {f"d{k}/t.wav": 2.0 + 0.1 * k for k in range(12)}
    src = make_tree(tmp_path / "src", good)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cnnaural_ext", "catalogue", str(src), "--out", str(out), "--model", str(checkpoint),
           "--workers", "2", "--flush-every", "1", "--no-progress", "--layers", "1,5", "--features", "all",
           "--duration", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "ledger").is_dir() and any(r["status"] == "ok" for r in read_rows(out)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it was killed"
    workers = children(proc.pid)
    assert workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.05)
    alive = [p for p in workers if Path(f"/proc/{p}").exists()
             and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"worker processes outlived their run: {alive}"
