"""`make demo`: auralise real music with the shipped model and print where the results are.

J.S. Bach's BWV 846 Prelude (rendered from the music21 score, with its MIDI onsets as ground
truth), one orchestral and one electronic track from the Debian packages, 4 s from 30 s in: the
most active features of layer 1 and of the deepest layer as WAVs and PNGs, a listening gallery
(index.html), and a Figure-3 style plot of the Prelude's opening with its onsets.
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
    args = ap.parse_args(argv)

    import cnnaural_ext as ca
    from cnnaural_ext import cli, data, viz
    from cnnaural_ext.audio import save_wav

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    aur = ca.Auraliser.pretrained()
    deepest = aur.deconvnet.n_layers
    sr = aur.sample_rate

    wave, onsets = data.render_bwv846(sample_rate=22050, cache_dir=data.default_cache_dir())
    bwv = save_wav(out / "bwv846.wav", wave, 22050)
    tracks = [bwv]
    orchestral = sorted(WESNOTH.glob("*.ogg"))
    electronic = sorted(WARZONE.glob("*/*.opus")) + sorted(WARZONE.glob("*.opus"))
    tracks += orchestral[:1] + electronic[:1]
    rc = cli.main(["report", *map(str, tracks), "--layer", f"1,{deepest}", "--features", args.features,
                   "--offset", "30", "--duration", str(args.duration), "--out", str(out)])
    if rc:
        return rc

    # Figure 3: the most active layer-1 feature of the Prelude's first seconds, onsets drawn
    from cnnaural_ext.audio import load

    x, _ = load(bwv, sr, duration=args.duration)
    res = aur.auralise(x, layer=1, features="top:1")
    X = aur.spectrogram.stft(x)
    Y = aur.spectrogram.stft(res.audio[0])
    fig = viz.figure3(out / "figure3_bwv846.png", x, res.audio[0], X, Y, sample_rate=sr,
                      hop_length=aur.spectrogram.hop_length, onsets=onsets[onsets < args.duration],
                      title=f"BWV 846 Prelude: layer 1, feature {res.features[0]} (ground-truth onsets in cyan)")
    print(f"Figure 3: {fig.resolve()}")
    print(f"demo done in {time.time() - t0:.0f} s: listen to {out.resolve()}/*/*.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
