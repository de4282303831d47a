"""Similarity measures of the sanity checks (`sanity`): rank correlation and SSIM of two maps,
correlation of two clips' log spectrograms. Their definitions are in `sanity`'s docstring."""
from __future__ import annotations

import torch

from ..errors import CnnauralError

#: the dB floor of the log spectrograms, below each clip's maximum
LOGSPEC_FLOOR_DB = -80.0

def _flat64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64).reshape(-1)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's r of two flat float64 tensors; both constant: 1 if equal else 0; one constant: 0."""
    if a.shape != b.shape:
        raise CnnauralError(f"cannot compare maps of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    da, db = a - a.mean(), b - b.mean()
    na, nb = float(da.norm()), float(db.norm())
    if na == 0.0 or nb == 0.0:
        return 1.0 if (na == 0.0 and nb == 0.0 and torch.equal(a, b)) else 0.0
    return float(max(-1.0, min(1.0, float(da @ db) / (na * nb))))


def rank(x) -> torch.Tensor:
    """Ranks 1..n of the values of `x` (flattened), ties given their average rank (float64)."""
    x = _flat64(x)
    order = torch.argsort(x, stable=True)
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    average = ends - (counts.double() - 1) / 2
    r = torch.empty_like(x)
    r[order] = average[inverse]
    return r


def spearman(a, b) -> float:
    """Spearman's rank correlation of two maps of the same shape (signed; ties average-ranked)."""
    a, b = _flat64(a), _flat64(b)
    if a.shape != b.shape:
        raise CnnauralError(f"cannot compare maps of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.numel() < 2:
        raise CnnauralError("a rank correlation needs maps of at least 2 values")
    if torch.equal(a, b):
        return 1.0
    return pearson(rank(a), rank(b))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _minmax(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(x))


def ssim(a, b, *, window: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03,
         normalize: bool = True) -> torch.Tensor | float:
    """Structural similarity (Wang et al. 2004) of two maps, with a Gaussian window.

    SSIM(x, y) = mean over window positions of
    (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
    the local means, variances and covariance weighted by a `window` x `window` Gaussian of
    standard deviation `sigma` (Wang et al.'s 11 and 1.5), C1 = (k1 L)^2, C2 = (k2 L)^2 with data
    range L = 1. Only positions where the window lies wholly inside the map count (scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1)`` computes the same). A map smaller than the window takes the largest odd window
    that fits (at least 3). Computed in float64.

    Args:
        a, b: maps (..., H, W) of the same shape.
        normalize: min-max scale each map to [0, 1] first (a constant map becomes 0); without
            it the maps must already lie in [0, 1].

    Returns:
        a float for two 2-D maps; a float64 tensor of the leading shape otherwise.
    """
    a = torch.as_tensor(a).detach().to("cpu", torch.float64)
    b = torch.as_tensor(b).detach().to("cpu", torch.float64)
    if a.shape != b.shape:
        raise CnnauralError(f"cannot compare maps of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise CnnauralError(f"SSIM takes maps (..., H, W), got shape {tuple(a.shape)}")
    if window < 3 or window % 2 == 0 or sigma <= 0:
        raise CnnauralError(f"the SSIM window must be odd and >= 3 and sigma > 0 (got {window}, {sigma})")
    h, w = a.shape[-2:]
    size = min(window, h - (1 - h % 2), w - (1 - w % 2))
    if size < 3:
        raise CnnauralError(f"SSIM needs maps of at least 3 x 3, got {h} x {w}")
    lead = a.shape[:-2]
    x, y = a.reshape(-1, 1, h, w), b.reshape(-1, 1, h, w)
    if normalize:
        x, y = _minmax(x), _minmax(y)
    g = _gaussian_window(size, sigma)

    def filt(z):  # separable valid correlation with g: weighted sums of shifted slices
        hv, wv = z.shape[-2] - size + 1, z.shape[-1] - size + 1
        v = sum(float(g[k]) * z[..., k:k + hv, :] for k in range(size))
        return sum(float(g[k]) * v[..., k:k + wv] for k in range(size))

    mx, my, xx, yy, xy = filt(torch.stack([x, y, x * x, y * y, x * y]))
    vx = xx - mx * mx
    vy = yy - my * my
    cxy = xy - mx * my
    c1, c2 = k1 ** 2, k2 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    s = s.mean(dim=(1, 2, 3)).reshape(lead)
    return float(s) if not lead else s


def compare_maps(a, b) -> dict:
    """{"spearman": |Spearman's rho|, "spearman_signed": rho, "ssim": SSIM} of two maps (F', T)."""
    rho = spearman(a, b)
    return {"spearman": abs(rho), "spearman_signed": rho, "ssim": ssim(a, b)}


def log_spectrogram(audio, spectrogram, floor_db: float = LOGSPEC_FLOOR_DB) -> torch.Tensor:
    """20 log10 |STFT| of clips (..., n) with `spectrogram`'s STFT, floored `floor_db` below each
    clip's maximum (a silent clip gives a constant)."""
    audio = torch.as_tensor(audio).detach().to("cpu", torch.float32)
    with torch.no_grad():
        mag = spectrogram.stft(audio).abs().double()
    peak = mag.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    return 20 * torch.log10(torch.maximum(mag, peak * 10 ** (floor_db / 20)).clamp_min(1e-30))


def logspec_correlation(a, b, spectrogram) -> float:
    """Pearson's r of the log spectrograms (`log_spectrogram`) of two clips (n,)."""
    a, b = torch.as_tensor(a).detach().cpu().float(), torch.as_tensor(b).detach().cpu().float()
    if a.dim() != 1 or a.shape != b.shape:
        raise CnnauralError(f"log-spectrogram correlation takes two mono clips (n,) of one length, got shapes "
                            f"{tuple(a.shape)} and {tuple(b.shape)}")
    ls = log_spectrogram(torch.stack([a, b]), spectrogram)
    return pearson(ls[0].reshape(-1), ls[1].reshape(-1))
