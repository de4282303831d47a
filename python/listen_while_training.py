"""Listen to a model while it trains: train a CNN on real audio and, every few steps, log the audio
of its most active features on a fixed probe clip to TensorBoard, with the deconvolved maps and the
layers' activations (`cnnaural_ext.integrations.AuralisationLogger`; needs the tensorboard extra).

    # a real model on a folder-per-class corpus (`cnnaural dataset data/corpus` builds one)
    python python/listen_while_training.py PROBE --data data/corpus --epochs 3 --every 10 --out runs/listen
    # no corpus: a toy task on the probe itself (its clips against noise), to try it in seconds
    python python/listen_while_training.py PROBE --steps 20 --every 10 --out runs/toy
    tensorboard --logdir runs          # AUDIO, IMAGES, HISTOGRAMS and SCALARS tabs

PROBE is the clip you listen to (4 s from --offset); it need not be in the corpus. The model is
`paper_cnn5` with batch norm and dropout on the shipped model's Spectrogram (11025 Hz, n_fft 512,
log1p); the corpus is split by track and its clips cached (`corpus.ClipCache`) as `cnnaural train`
does. Logging leaves training exactly as it was (mode, gradients, RNG, batch-norm statistics), so
the run is the same with or without it.
"""
import argparse
import time

import torch

import cnnaural_ext as ca
from cnnaural_ext.corpus import ClipCache, ClipDataset, class_names, scan_tracks, split_by_track
from cnnaural_ext.integrations import AuralisationLogger, summary_writer
from cnnaural_ext.io.audio import load


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("track", help="the probe clip to listen to while training")
    ap.add_argument("--data", default=None, help="folder-per-class corpus to train on (default: a toy task on TRACK)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: all epochs)")
    ap.add_argument("--every", type=int, default=10, help="log every N training steps")
    ap.add_argument("--layers", default="1,5")
    ap.add_argument("--features", default="top:4")
    ap.add_argument("--offset", type=float, default=0.0, help="where the probe starts in TRACK (s)")
    ap.add_argument("--width", type=int, default=16, help="conv channels of the model")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--clips-per-track", type=int, default=10)
    ap.add_argument("--cache-dir", default=None, help="clip cache (default: the library's)")
    ap.add_argument("--out", default="out/training", help="TensorBoard log folder")
    return ap.parse_args(argv)


def corpus_data(args, spec):
    """(classes, train loader, validation set) of a folder-per-class corpus, split by track."""
    tracks = scan_tracks(args.data)
    classes = class_names(tracks)
    split = split_by_track(tracks, val=0.15, test=0.15, random_seed=0)
    cache = ClipCache(spec, args.cache_dir, clip_seconds=4.0, clips_per_track=args.clips_per_track)
    train, val = ClipDataset(split["train"], classes, cache), ClipDataset(split["val"], classes, cache)
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    return classes, loader, val


def toy_data(args, spec, probe):
    """(classes, train loader, None): crops of the probe (plus a little noise) against noise of its level."""
    g = torch.Generator().manual_seed(0)
    n = probe.shape[0]
    waves = torch.stack([probe + 0.05 * probe.std() * torch.randn(n, generator=g) if k % 2 == 0
                         else probe.std() * torch.randn(n, generator=g) for k in range(16)])
    with torch.no_grad():
        _, S = spec(waves)
    data = torch.utils.data.TensorDataset(S[:, None], torch.arange(16) % 2, torch.zeros(16, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=min(args.batch_size, 4), shuffle=True, generator=g)
    return ["probe", "noise"], loader, None


@torch.no_grad()
def accuracy(model, dataset):
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=64)
    right = sum(int((model(x).argmax(1) == y).sum()) for x, y, _ in loader)
    model.train()
    return right / max(len(dataset), 1)


def main(argv=None):
    args = parse(argv)
    torch.manual_seed(0)
    spec = ca.Spectrogram(sample_rate=11025, n_fft=512, hop_length=256, scale="log1p")
    probe, sr = load(args.track, spec.sample_rate, offset=args.offset, duration=4.0)
    classes, loader, val = corpus_data(args, spec) if args.data else toy_data(args, spec, probe)
    x0 = next(iter(loader))[0]
    model = ca.models.paper_cnn5(n_classes=len(classes), width=args.width, input_shape=tuple(x0.shape[-2:]),
                                 batchnorm=True, dense=(64,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    writer = summary_writer(args.out)
    # the Auraliser reads the model once and keeps no copy: it hears the weights as they train
    log = AuralisationLogger(writer, ca.Auraliser(model, spec), {"probe": probe}, layers=args.layers,
                             features=args.features, every=args.every)
    print(f"classes {classes}; {len(loader)} steps per epoch; logging to {args.out}", flush=True)
    step, t0 = 0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        for x, y, _ in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            writer.add_scalar("train/loss", loss.item(), step)
            logged = log.log(step)
            if logged is not None:
                print(f"step {step}: loss {loss.item():.3f}; logged {len(logged.audio)} clips in "
                      f"{logged.seconds:.2f} s; features {[r.features for r in logged.results['probe']]}", flush=True)
            if args.steps is not None and step >= args.steps:
                break
        if val is not None:
            acc = accuracy(model, val)
            writer.add_scalar("val/clip_accuracy", acc, step)
            print(f"epoch {epoch}: validation clip accuracy {acc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if args.steps is not None and step >= args.steps:
            break
    writer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
