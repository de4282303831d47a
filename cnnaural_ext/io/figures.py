"""Figures written to files: deconvolved spectrograms, Figure-3 style waveform/spectrogram panels,
first-layer filters (Figure 2), class heat maps. Matplotlib with the Agg backend, never a window."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .files import atomic_write  # noqa: E402


def _db(mag, floor_db=-80.0):
    mag = np.abs(np.asarray(mag, dtype=np.float64))
    ref = mag.max() if mag.size and mag.max() > 0 else 1.0
    return np.maximum(20 * np.log10(np.maximum(mag, 1e-12) / ref), floor_db)


def _save(fig, path):
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return path


def save_map(path, m, *, sample_rate: int, hop_length: int, title: str = "", signed: bool = True):
    """Image of one deconvolved map (F', T), low frequencies at the bottom (the original's flipud)."""
    m = torch.as_tensor(m).detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    vmax = float(np.abs(m).max()) or 1.0
    extent = [0, m.shape[1] * hop_length / sample_rate, 0, m.shape[0]]
    im = ax.imshow(m, origin="lower", aspect="auto", extent=extent,
                   cmap="RdBu_r" if signed else "magma", vmin=-vmax if signed else 0, vmax=vmax)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("bin")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _save(fig, path)


def figure3(path, original, deconvolved, stft_original, stft_deconvolved, *, sample_rate: int, hop_length: int,
            onsets=None, title: str = ""):
    """Figure 3 of the paper: original and deconvolved waveforms (top) and spectrograms (bottom),
    ground-truth onsets drawn as vertical lines when given (seconds)."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True)
    for col, (wave, X, name) in enumerate([(original, stft_original, "original"),
                                           (deconvolved, stft_deconvolved, "deconvolved")]):
        w = torch.as_tensor(wave).detach().float().cpu().numpy()
        t = np.arange(w.shape[-1]) / sample_rate
        axes[0, col].plot(t, w, lw=0.4, color="k")
        axes[0, col].set_title(f"{name} waveform", fontsize=9)
        S = _db(torch.as_tensor(X).detach().abs().cpu().numpy())
        axes[1, col].imshow(S, origin="lower", aspect="auto", cmap="magma",
                            extent=[0, S.shape[1] * hop_length / sample_rate, 0, sample_rate / 2000])
        axes[1, col].set_title(f"{name} spectrogram (dB)", fontsize=9)
        axes[1, col].set_ylabel("kHz")
        axes[1, col].set_xlabel("time (s)")
        if onsets is not None:
            for ax in axes[:, col]:
                for o in np.asarray(onsets):
                    ax.axvline(o, color="tab:cyan", lw=0.5, alpha=0.7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def filters(path, learned, initial=None, *, title: str = ""):
    """Figure 2: first-layer filters (C_out, 1, kH, kW), initial beside learned when given."""
    sets = [("initial", initial), ("learned", learned)] if initial is not None else [("learned", learned)]
    n = torch.as_tensor(learned).shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = plt.figure(figsize=(4.2 * len(sets), 4.2 * rows / cols + 0.6))
    sub = fig.subfigures(1, len(sets)) if len(sets) > 1 else [fig]
    for sf, (name, w) in zip(sub, sets):
        w = torch.as_tensor(w).detach().float().cpu().numpy()[:, 0]
        axs = sf.subplots(rows, cols, squeeze=False)
        for i, ax in enumerate(axs.flat):
            ax.axis("off")
            if i < n:
                v = np.abs(w[i]).max() or 1.0
                ax.imshow(w[i], origin="lower", cmap="gray", vmin=-v, vmax=v, interpolation="nearest")
        sf.suptitle(name, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10, y=1.02)
    return _save(fig, path)


def heatmap(path, matrix, row_labels, *, title: str = "", xlabel: str = "feature"):
    """Rows (e.g. classes) x columns (features), each column scaled to its maximum."""
    m = np.asarray(matrix, dtype=np.float64)
    col_max = m.max(axis=0, keepdims=True)
    scaled = np.divide(m, col_max, out=np.zeros_like(m), where=col_max > 0)
    fig, ax = plt.subplots(figsize=(max(6.0, m.shape[1] * 0.18), 0.5 * m.shape[0] + 1.6))
    im = ax.imshow(scaled, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(row_labels)), labels=row_labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03, label="mean activation / feature's max over rows")
    return _save(fig, path)
