"""Log what a model learns while it trains: every few steps, auralise the most active features of
a fixed clip and keep the audio and the deconvolved maps (written as WAV/PNG here; with
TensorBoard installed, pass them to SummaryWriter.add_audio / add_image instead).

    python python/listen_while_training.py TRACK [--steps 20] [--out out/training]
"""
import argparse
from pathlib import Path

import torch

import cnnaural_ext as ca
from cnnaural_ext.io import figures
from cnnaural_ext.io.audio import load, save_audio


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("track")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--out", default="out/training")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    spec = ca.Spectrogram(scale="log1p")
    wave, sr = load(args.track, spec.sample_rate, duration=4.0)
    _, S = spec(wave)
    model = ca.models.paper_cnn5(n_classes=2, width=8, input_shape=tuple(S.shape), dense=(32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    aur = ca.Auraliser(model, spec)  # reads the model once; no copy: it sees the weights as they train
    out = Path(args.out)
    for step in range(1, args.steps + 1):
        model.train()
        x = S[None, None] + 0.05 * torch.randn(4, 1, *S.shape)  # a toy batch: the clip, noisy
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0:
            res = aur.auralise(wave, layer=1, features="top:2")
            for row, k in enumerate(res.features):
                save_audio(out / f"step{step}_feature{k}.wav", res.audio[row], sr)
                figures.save_map(out / f"step{step}_feature{k}.png", res.maps[row], sample_rate=sr,
                                 hop_length=spec.hop_length, title=f"step {step}, layer 1, feature {k}")
            print(f"step {step}: loss {loss.item():.3f}, logged features {res.features}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
