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


def input_frequencies(spectrogram) -> np.ndarray:
    """The centre frequency in Hz of each row of `spectrogram`'s network input (F',): the linear
    STFT bins k * sample_rate / n_fft, or the mel band centres when it has n_mels."""
    if not spectrogram.n_mels:
        return np.arange(spectrogram.n_freqs) * spectrogram.sample_rate / spectrogram.n_fft
    from ..spectrogram import hz_to_mel, mel_to_hz

    f_max = spectrogram.sample_rate / 2 if spectrogram.f_max is None else spectrogram.f_max
    mels = np.linspace(float(hz_to_mel(spectrogram.f_min)), float(hz_to_mel(f_max)), spectrogram.n_mels + 2)
    return mel_to_hz(mels[1:-1]).numpy()


def _khz_axis(ax, freqs: np.ndarray, n_rows: int) -> list:
    """The image's vertical extent, [low, high]: kHz when the rows are evenly spaced in Hz; else
    (mel bands) row numbers, with ticks at round kHz values placed by the band centres."""
    step = np.diff(freqs)
    if n_rows > 1 and np.allclose(step, step[0]):
        half = step[0] / 2000
        return [freqs[0] / 1000 - half, freqs[-1] / 1000 + half]
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 4, 8, 16) if freqs[0] / 1000 <= t <= freqs[-1] / 1000]
    ax.set_yticks(np.interp(np.asarray(ticks) * 1000, freqs, np.arange(n_rows)), labels=[f"{t:g}" for t in ticks])
    return [-0.5, n_rows - 0.5]


def save_map(path, m, *, sample_rate: int, hop_length: int, frequencies=None, title: str = "",
             floor_db: float = -80.0):
    """Image of one deconvolved map (F', T): its magnitude in dB below its maximum (floored at
    `floor_db`), time in seconds, frequency in kHz with low frequencies at the bottom (the
    original's flipud), a sequential colour map: the look of the Figure-3 spectrograms.

    Args:
        frequencies: the centre frequency in Hz of each of the F' rows (`input_frequencies` of the
            model's Spectrogram; mel bands are drawn evenly, labelled by their centres in kHz).
            Default: F' linear STFT bins from 0 to sample_rate / 2.
    """
    m = torch.as_tensor(m).detach().float().cpu().numpy()
    n_rows = m.shape[0]
    freqs = (np.linspace(0, sample_rate / 2, n_rows) if frequencies is None
             else np.asarray(frequencies, dtype=np.float64))
    if freqs.shape != (n_rows,):
        raise ValueError(f"frequencies has {freqs.shape[0]} entries for a map of {n_rows} rows")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ylim = _khz_axis(ax, freqs, n_rows)
    extent = [0, m.shape[1] * hop_length / sample_rate, *ylim]
    im = ax.imshow(_db(m, floor_db), origin="lower", aspect="auto", extent=extent, cmap="magma",
                   vmin=floor_db, vmax=0, interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="dB")
    return _save(fig, path)


def histogram(path, values, *, marks=(), bins: int = 40, title: str = "", xlabel: str = "activation"):
    """A small histogram of `values` (e.g. a feature's per-track maximum over a catalogue), with
    vertical lines at `marks` (e.g. the values of the top tracks)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    fig, ax = plt.subplots(figsize=(4, 1.9))
    ax.hist(v, bins=bins, color="#555", log=len(v) > 200)
    for x in marks:
        ax.axvline(x, color="tab:orange", lw=0.8, alpha=0.8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("tracks", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8)
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
