"""benchmarks/bench_catalogue.py runs (--quick on a tiny synthetic tree, the small checkpoint), so
it never rots. Never a timed test: it checks the table, not the numbers. The Ray engine is left
out here (tests/test_catalogue_ray.py covers it; a Ray start would double this test's time)."""
import json
import runpy
import sys
from pathlib import Path

from catalogue_helpers import make_tree

ROOT = Path(__file__).resolve().parents[1]


def test_bench_catalogue_quick_runs(tmp_path, checkpoint):
    src = make_tree(tmp_path / "src", {"a/intro.wav": 2.0, "b/intro.wav": 2.5})
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        mod = runpy.run_path(str(ROOT / "benchmarks" / "bench_catalogue.py"))
        assert mod["main"](["--quick", "--src", str(src), "--model", str(checkpoint), "--no-ray",
                            "--out", str(tmp_path / "res")]) == 0
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    data = json.loads((tmp_path / "res" / "catalogue.json").read_text())
    assert [r["method"].split()[0] for r in data["rows"]] == ["(a)", "(b)", "(c)", "(c4)"]
    assert all(r["ok"] == 2 and r["tracks_per_h"] > 0 for r in data["rows"])
    assert 0 <= data["rows"][2]["waited_pct"] <= 100
    assert (tmp_path / "res" / "catalogue.md").read_text().count("\n|") >= 5
