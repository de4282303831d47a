"""`make demo`: auralise real music with the shipped model and print where the results are.

J.S. Bach's BWV 846 Prelude (rendered from the music21 score, with its MIDI onsets as ground
truth), one orchestral and one electronic track from the Debian packages, 4 s from 30 s in: the
most active features of layer 1 and of the deepest layer as WAVs and PNGs, and a listening
gallery (index.html) with the paper's figures and analysis tables: the first-layer filters of
the shipped model and of the shipped 12x12 model, initial beside learned (Figure 2); every
layer-1 feature scored as an onset detector on the Prelude, with Figure 3 of the best one; and
the mean activation of every deepest-layer feature per class over the shipped model's test
split (the corpus is built in data/corpus on the first run, its clips cached).
"""
import argparse
import sys
import time
from pathlib import Path

WESNOTH = Path("/usr/share/games/wesnoth/1.16/data/core/music")
WARZONE = Path("/usr/share/games/warzone2100/music")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/demo")
    ap.add_argument("--features", default="top:3")
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--data", default="data/corpus", help="folder-per-class corpus (built here if missing)")
    args = ap.parse_args(argv)

    import cnnaural_ext as ca
    from cnnaural_ext import cli, corpus
    from cnnaural_ext.auralise import ASSETS
    from cnnaural_ext.io.audio import save_audio
    from cnnaural_ext.report import ANALYSIS

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deepest = ca.Auraliser.pretrained().deconvnet.n_layers

    wave, _ = corpus.render_bwv846(sample_rate=22050, cache_dir=corpus.default_cache_dir())
    bwv = save_audio(out / "bwv846.wav", wave, 22050)
    tracks = [bwv]
    orchestral = sorted(WESNOTH.glob("*.ogg"))
    electronic = sorted(WARZONE.glob("*/*.opus")) + sorted(WARZONE.glob("*.opus"))
    tracks += orchestral[:1] + electronic[:1]
    corpus_dir = Path(args.data)
    if not corpus_dir.is_dir():
        print(f"building the corpus in {corpus_dir} (once)")
        corpus.prepare_corpus(corpus_dir)
    extra = ["--figures", "--data", str(corpus_dir)]
    filters_12x12 = ASSETS / "paper_cnn4_12x12.pt"
    if filters_12x12.is_file():
        extra += ["--filters-model", str(filters_12x12)]
    rc = cli.main(["report", *map(str, tracks), "--layers", f"1,{deepest}", "--features", args.features,
                   "--offset", "30", "--duration", str(args.duration), "--out", str(out), *extra])
    if rc:
        return rc
    print(f"Figure 3: {(out / ANALYSIS / 'figure3_bwv846.png').resolve()}")
    print(f"demo done in {time.time() - t0:.0f} s: listen to {out.resolve()}/*/*.wav "
          f"or open {(out / 'index.html').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
