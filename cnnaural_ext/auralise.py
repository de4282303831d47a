"""Auraliser: from a waveform (or an audio file) to the audio of chosen learned features.

One STFT and one forward pass per track serve every layer and every seed; the K seeds of a layer
share its switches and the complex STFT X. The deconvolved maps D (network-input space) are
brought to the linear STFT grid and inverted with the batched `masked_istft`:

- mode "mask" (the original code): Y = X * D — the phase of X, flipped where D < 0.
- mode "magnitude" (the paper's wording): |Y| = inverse_scale(relu(D)), phase of X.
- phase "griffinlim": start from the chosen phase and refine it by Griffin-Lim on |Y|.

`Auraliser.auralise_file` is the whole pipeline for one track: load the excerpt, auralise every
requested layer, write the clips, the maps, a figure per layer and manifest.json (every file
atomically, nothing before everything is computed) and return the manifest rows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import ops
from .deconvnet import DeconvNet, parse_features
from .errors import CnnauralError
from .spectrogram import Spectrogram

ASSETS = Path(__file__).resolve().parent / "assets"
PRETRAINED = ASSETS / "paper_cnn5_default.pt"

MODES = ("mask", "magnitude")
PHASES = ("original", "griffinlim")
SEEDS = ("map", "max")


@dataclass
class AuralisationResult:
    """What `Auraliser.auralise` returns for one layer.

    Attributes:
        audio (Tensor): (K, n) one clip per feature, float32 on the CPU.
        maps (Tensor): (K, F', T) deconvolved maps in network-input space.
        features (list[int]): the feature of each row.
        layer: the layer they come from.
        sample_rate (int)
        original (Tensor): (n,) the input waveform.
        stats (list[dict]): per feature, activation statistics of the seed: max, mean, and the
            fraction of positive positions of its activation map.
        mode, phase, seed (str): how the audio was made.
        stft (Tensor): (F, T) complex STFT of the input on the Auraliser's device, shared by the
            results of one call.
        inversion (list[dict]): per feature, how far the inverse STFT moved the clip from its map
            (`quality`): spectral_convergence, clipped (share of samples beyond full scale before
            normalisation), inconsistent (spectral convergence above `quality.INCONSISTENT`).
        activation (Tensor | None): the layer's whole output for the input, every feature, as
            the model computed it (e.g. (C, h, w)); only when asked (keep_activations=True), since
            it can be large.
    """
    audio: torch.Tensor
    maps: torch.Tensor
    features: list
    layer: object
    sample_rate: int
    original: torch.Tensor
    stats: list = field(default_factory=list)
    mode: str = "mask"
    phase: str = "original"
    seed: str = "map"
    stft: torch.Tensor | None = None
    inversion: list = field(default_factory=list)
    activation: torch.Tensor | None = None


def parse_layers(layers, n_layers: int) -> list:
    """Resolve a layers spec — int | "output" | module name | list | "1,5" | "1,layer2.0.conv1" |
    "all" — to a list of layers.

    Layers are 1-based conv layers, module names (that module's output) or "output" (the class
    scores). Ranges and names are checked by DeconvNet; this only parses.
    """
    if isinstance(layers, bool):
        raise CnnauralError(f"layers are integers 1..{n_layers}, module names, 'all' or 'output' (got {layers!r})")
    if isinstance(layers, (int, str)):
        text = str(layers).strip()
        if text.lower() == "all":
            return list(range(1, n_layers + 1))
        layers = [p.strip() for p in text.split(",") if p.strip()]
    out = []
    try:
        parts = list(layers)
    except TypeError:
        raise CnnauralError(f"layers are integers 1..{n_layers}, module names, 'all' or 'output' "
                            f"(got {layers!r})") from None
    for part in parts:
        if isinstance(part, bool):
            raise CnnauralError(f"layers are integers 1..{n_layers}, module names, 'all' or 'output' (got {part!r})")
        if isinstance(part, str):
            text = part.strip()
            if text.lower() == "output":
                out.append("output")
            elif text.lstrip("+-").isdigit():
                out.append(int(text))
            elif text:
                out.append(text)
            continue
        try:
            out.append(int(part))
        except (TypeError, ValueError):
            raise CnnauralError(f"layers are integers 1..{n_layers}, module names, 'all' or 'output' "
                                f"(got {layers!r})") from None
    if not out:
        raise CnnauralError("no layers selected")
    return out


def _check_choice(value, choices, what):
    if value not in choices:
        raise CnnauralError(f"{what} must be one of {', '.join(choices)} (got {value!r})")


class Auraliser:
    """Listen to the learned features of `model`, whose input is `spectrogram`'s network input.

    Args:
        model: any CNN `DeconvNet` takes (see its docs and the README's "Your own model"). Its
            input is what its first convolution asks for: (1, 1, F', T) for a Conv2d, (1, F', T)
            for a Conv1d over spectrogram frames (in_channels = F'), or the waveform (1, n) when
            the model's first module is a front end (a `cnnaural_ext.Spectrogram`); the maps are
            then taken at the front end's output.
        spectrogram: the Spectrogram the model was trained with; optional when the model's first
            module is a `Spectrogram` (that one is used; one given too must have its configuration).
        device: where to run (default: the model's device).
        max_batch_bytes: the deconvnet's seed-chunk budget (see `DeconvNet`); None (default):
            from the device's free memory (`deconvnet.memory_budget`).

    Attributes:
        source (str): where the model came from: a checkpoint path, "shipped", or the model's
            class name; recorded in manifests.
        meta (dict): what the checkpoint records besides the weights (classes, metrics, split).
    """

    def __init__(self, model: torch.nn.Module, spectrogram: Spectrogram | None = None, device=None,
                 max_batch_bytes: int | None = None):
        if not isinstance(model, torch.nn.Module):
            raise CnnauralError(f"Auraliser needs an nn.Module model (got {type(model).__name__})")
        self.model = model
        self.deconvnet = DeconvNet(model, max_batch_bytes)
        self.spectrogram = _front_end_spectrogram(self.deconvnet, spectrogram)
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.model.to(self.device)
        self.spectrogram.to(self.device)
        self.meta: dict = {}
        self.source = type(model).__name__

    @classmethod
    def from_checkpoint(cls, path, device=None) -> "Auraliser":
        """Build from a checkpoint written by `cnnaural train` (weights-only loading)."""
        from .io.checkpoint import load_checkpoint

        model, spec, meta = load_checkpoint(path)
        if device is not None:
            model.to(device)
        aur = cls(model, spec, device)
        aur.meta = meta
        aur.source = str(path)
        return aur

    @classmethod
    def pretrained(cls, device=None) -> "Auraliser":
        """The shipped default model (paper_cnn5 trained on real music) and its Spectrogram."""
        if not PRETRAINED.is_file():
            raise CnnauralError(f"the shipped model is missing ({PRETRAINED}); reinstall cnnaural_ext or pass --model")
        aur = cls.from_checkpoint(PRETRAINED, device)
        aur.source = "shipped"
        return aur

    @property
    def sample_rate(self) -> int:
        return self.spectrogram.sample_rate

    def model_input(self, S: torch.Tensor, waveform: torch.Tensor | None = None) -> torch.Tensor:
        """What the model takes for one track, from its network input S (F', T) (and the waveform
        (n,), needed when the model's front end is inside it): (1, 1, F', T) for a Conv2d model,
        (1, F', T) for a Conv1d over frames, (1, n) for a model with its own front end."""
        return self.model_inputs(S[None], None if waveform is None else waveform[None])

    def model_inputs(self, S: torch.Tensor, waveforms: torch.Tensor | None = None) -> torch.Tensor:
        """`model_input` for B tracks of one length: S (B, F', T), waveforms (B, n) -> (B, 1, F', T),
        (B, F', T) or (B, n)."""
        dn = self.deconvnet
        if dn.takes_waveform:
            if waveforms is None:
                raise CnnauralError("this model takes the waveform (its front end is inside it)")
            return waveforms.to(self.device, torch.float32)
        first = dn.conv(1)
        if isinstance(first, torch.nn.Conv1d):
            if first.in_channels != S.shape[-2]:
                raise CnnauralError(f"the first Conv1d ({first.in_channels} input channels) does not take the "
                                    f"spectrogram's {S.shape[-2]} bins as channels")
            return S
        return S[:, None]

    def _maps(self, maps: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
        """Deconvolved maps (K, ...) as (K, F', T) on the network input's grid."""
        if maps[0].numel() != S.numel():
            raise CnnauralError(f"the deconvolved maps {tuple(maps.shape[1:])} are not on the spectrogram's grid "
                                f"{tuple(S.shape)}")
        return maps.reshape(maps.shape[0], *S.shape)

    def check_request(self, layers=1, features="all", *, mode: str = "mask", phase: str = "original",
                      seed: str = "map") -> list:
        """Check a request before any work: the layers (returned as a list), that `features`
        fits every one of them, and the mode, phase and seed kind."""
        _check_choice(mode, MODES, "mode")
        _check_choice(phase, PHASES, "phase")
        _check_choice(seed, SEEDS, "seed")
        layers = parse_layers(layers, self.deconvnet.n_layers)
        for layer in layers:
            n = self.deconvnet.n_features(layer)
            parse_features(features, n, torch.zeros(n, 1), "output" if layer == "output" else f"layer {layer}")
        return layers

    def check_file_request(self, *, layers=1, features="all", mode: str = "mask", phase: str = "original",
                           seed: str = "map", audio_format: str = "wav", **_options) -> list:
        """`check_request` for the keyword arguments of `auralise_file`, and its audio format;
        returns the layers. The options that need no check (offset, subtype, ...) pass."""
        from .io.audio import AUDIO_FORMATS

        if f".{audio_format}" not in AUDIO_FORMATS:
            raise CnnauralError(f"audio_format must be one of {', '.join(s[1:] for s in AUDIO_FORMATS)} "
                                f"(got {audio_format!r})")
        return self.check_request(layers, features, mode=mode, phase=phase, seed=seed)

    def auralise(self, waveform: torch.Tensor, layer=1, features="all", *, mode: str = "mask",
                 phase: str = "original", normalize: bool = True, seed: str = "map",
                 griffinlim_iters: int = 32, mel_inverse: str | None = None) -> AuralisationResult:
        """Auralise `features` of `layer` for one waveform.

        Args:
            waveform (Tensor): (n,) mono audio at `spectrogram.sample_rate`.
            layer: 1-based conv layer, a module name, or "output" for class targets.
            features: list of ints | "all" | "top:K".
            mode: "mask" (Y = X * D, the original code) | "magnitude" (|Y| from relu(D), phase of X).
            phase: "original" | "griffinlim".
            normalize: peak-normalise each clip.
            seed: "map" (the whole activation map of the feature) | "max" (its strongest position).
            griffinlim_iters: iterations for phase="griffinlim".
            mel_inverse: how mel maps return to the STFT grid (see Spectrogram.to_linear).

        Returns:
            AuralisationResult with audio (K, n).
        """
        return self.auralise_layers(waveform, [layer], features, mode=mode, phase=phase, normalize=normalize,
                                    seed=seed, griffinlim_iters=griffinlim_iters, mel_inverse=mel_inverse)[0]

    def auralise_layers(self, waveform: torch.Tensor, layers, features="all", *, mode: str = "mask",
                        phase: str = "original", normalize: bool = True, seed: str = "map",
                        griffinlim_iters: int = 32, mel_inverse: str | None = None,
                        keep_activations: bool = False) -> list[AuralisationResult]:
        """`auralise` for several layers with one STFT and one forward pass (to the deepest).

        Args:
            layers: a list of layers (or a spec `parse_layers` reads: "1,5", "all").
            keep_activations: also return each layer's whole output (`AuralisationResult.activation`).
            the rest: as `auralise`.

        Returns:
            one AuralisationResult per layer, in the order given.
        """
        layers = self.check_request(layers, features, mode=mode, phase=phase, seed=seed)
        waveform = torch.as_tensor(waveform)
        if waveform.dim() != 1:
            raise CnnauralError(f"waveform must be mono (n,), got shape {tuple(waveform.shape)}")
        return self._auralise(waveform[None], layers, features, mode=mode, phase=phase, normalize=normalize,
                              seed=seed, griffinlim_iters=griffinlim_iters, mel_inverse=mel_inverse,
                              keep_activations=keep_activations)[0]

    def auralise_batch(self, waveforms, layers, features="all", *, mode: str = "mask", phase: str = "original",
                       normalize: bool = True, seed: str = "map", griffinlim_iters: int = 32,
                       mel_inverse: str | None = None,
                       keep_activations: bool = False) -> list[list[AuralisationResult]]:
        """`auralise_layers` for several waveforms of one length (e.g. excerpts of several tracks)
        with one batched STFT and one batched forward pass: [results per layer] per waveform.

        Each waveform keeps its own switches and its own features ("top:K" is per waveform); the
        seeds go back with `DeconvNet.deconvolve_batch`. The clips equal `auralise_layers` of each
        waveform alone up to float rounding (the batched convolutions sum in another order).
        Class targets ("output") and models on the general path are taken one waveform at a time.

        Args:
            waveforms: (B, n) tensor, or a list of B (n,) tensors of the same length.
            the rest: as `auralise_layers`.
        """
        layers = self.check_request(layers, features, mode=mode, phase=phase, seed=seed)
        if isinstance(waveforms, (list, tuple)):
            if not waveforms:
                return []
            lengths = {int(torch.as_tensor(w).shape[-1]) for w in waveforms}
            if len(lengths) != 1 or any(torch.as_tensor(w).dim() != 1 for w in waveforms):
                raise CnnauralError("auralise_batch takes mono waveforms (n,) of one length; got lengths "
                                    f"{sorted(lengths)} (batch waveforms of equal length, or call auralise_layers)")
            waveforms = torch.stack([torch.as_tensor(w) for w in waveforms])
        waveforms = torch.as_tensor(waveforms)
        if waveforms.dim() != 2:
            raise CnnauralError(f"waveforms must be (B, n) mono audio, got shape {tuple(waveforms.shape)}")
        kw = dict(mode=mode, phase=phase, normalize=normalize, seed=seed, griffinlim_iters=griffinlim_iters,
                  mel_inverse=mel_inverse, keep_activations=keep_activations)
        if getattr(self.deconvnet, "general", False) or "output" in layers:
            return [self._auralise(w[None], layers, features, **kw)[0] for w in waveforms]
        return self._auralise(waveforms, layers, features, **kw)

    def _auralise(self, waveforms: torch.Tensor, layers: list, features, *, mode, phase, normalize, seed,
                  griffinlim_iters, mel_inverse, keep_activations=False) -> list[list[AuralisationResult]]:
        """The pipeline for checked `layers` and waveforms (B, n): results per layer per waveform."""
        spec, dn = self.spectrogram, self.deconvnet
        B = waveforms.shape[0]
        x_wave = waveforms.to(self.device, torch.float32)
        X, S = spec(x_wave)  # (B, F, T) complex, (B, F', T)
        with torch.no_grad():
            rec = dn.record(self.model_inputs(S, x_wave), layers, keep="asked")
            # every layer's maps first, dropping each layer's output when done, then the recording
            # (switches) before the inverse STFTs: the peak memory is the larger of the two stages
            done = [[] for _ in range(B)]
            for pos, layer in enumerate(layers):
                act = dn.activation(rec, layer)
                if B == 1:
                    per_input = [dn.deconvolve(rec, layer, features, seed=seed, return_features=True)]
                else:
                    per_input = dn.deconvolve_batch(rec, layer, features, seed=seed)
                for b, (maps, feats) in enumerate(per_input):
                    done[b].append((layer, self._maps(maps, S[b]), feats, _stats(act[b][list(feats)]),
                                    act[b] if keep_activations else None))
                del act, per_input
                dn.release(rec, layer, keep=layers[pos + 1:])
            del rec
        return [self._invert(X[b], waveforms[b], done[b], mode=mode, phase=phase, normalize=normalize, seed=seed,
                             griffinlim_iters=griffinlim_iters, mel_inverse=mel_inverse) for b in range(B)]

    def _invert(self, X, waveform, done, *, mode, phase, normalize, seed, griffinlim_iters, mel_inverse):
        """The clips of one waveform: its STFT X (F, T) and [(layer, maps, features, stats,
        activation or None)] -> one AuralisationResult per layer."""
        spec, dn = self.spectrogram, self.deconvnet
        n = waveform.shape[-1]
        istft_kw = dict(n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length,
                        window=spec.window_like(X), center=spec.center, length=n)
        original = waveform.float().cpu()
        # rows per inverse-STFT call: a complex spectrum, its frames and the audio per row
        rows = max(1, dn.budget(X.device) // max(1, 4 * X.numel() * X.element_size()))
        from .quality import INCONSISTENT, clipped_share, intended_magnitude, spectral_convergence

        results = []
        for layer, maps, feats, stats, activation in done:
            parts, inversion = [], []
            for k in range(0, maps.shape[0], rows):
                gain = spec.to_linear(maps[k:k + rows], kind=mode, mel_inverse=mel_inverse).contiguous()
                audio = ops.masked_istft(X, gain, mode=mode, **istft_kw)
                if phase == "griffinlim":
                    mag = (X.abs() * gain).abs() if mode == "mask" else gain
                    audio = griffin_lim(mag, audio, spec, griffinlim_iters, istft_kw)
                sc = spectral_convergence(audio, intended_magnitude(X, gain, mode), spec).tolist()
                inversion += [{"spectral_convergence": v, "clipped": c, "inconsistent": v > INCONSISTENT}
                              for v, c in zip(sc, clipped_share(audio).tolist())]
                del gain
                if normalize:
                    from .io.audio import peak_normalize

                    audio = peak_normalize(audio)
                parts.append(audio.float().cpu())
            results.append(AuralisationResult(
                audio=torch.cat(parts) if len(parts) > 1 else parts[0], maps=maps.float().cpu(), features=feats,
                layer=layer, sample_rate=spec.sample_rate, original=original, stats=stats, mode=mode,
                phase=phase, seed=seed, stft=X, inversion=inversion, activation=activation))
        return results

    def auralise_file(self, track, out_dir, *, layers=1, features="all", offset: float = 0.0,
                      duration: float | None = 4.0, mode: str = "mask", phase: str = "original",
                      seed: str = "map", normalize: bool = True, audio_format: str = "wav",
                      subtype: str = "PCM_16", figures: bool = True, name: str | None = None) -> list[dict]:
        """Auralise one track into `out_dir`: the whole pipeline.

        Writes ``original.<fmt>``, per layer and feature ``layer<L>_feature<kkk>.<fmt>`` and the
        deconvolved map as ``.png``, per layer ``layer<L>_figure.png`` (Figure 3: waveforms and
        spectrograms of the original and of the most active feature) and ``manifest.json``. All
        is computed before the first file is written; every file is written atomically, the
        manifest last.

        Args:
            track: an audio file (anything `io.audio.load` reads), or a waveform (n,) at the
                Auraliser's sample rate.
            out_dir: the track's output folder (created).
            layers: "1,5" | "all" | [1, 5] | 1 (see `parse_layers`).
            features: list of ints | "all" | "top:K" (per layer).
            offset, duration: the excerpt in seconds (duration None or <= 0: to the end).
            mode, phase, seed, normalize: as `auralise`.
            audio_format: "wav" | "flac".
            subtype: sample format, "PCM_16" (default), "PCM_24" or "FLOAT" (wav only).
            figures: also write the map images and the per-layer figure.
            name: the track's label in titles (default: the file name, or "waveform").

        Returns:
            the manifest rows, one per (layer, feature): track, original, layer, feature, audio
            and image (file names in out_dir; image None without figures), max, mean, active,
            offset, duration, sample_rate, mode, phase, seed, model.
        """
        from .io.audio import load

        layers = self.check_file_request(layers=layers, features=features, mode=mode, phase=phase, seed=seed,
                                         audio_format=audio_format)
        duration = duration if duration and duration > 0 else None
        if isinstance(track, torch.Tensor):
            wave = excerpt(track, offset, duration, self.sample_rate)
            label = where = name or "waveform"
        else:
            wave, _ = load(track, self.sample_rate, offset=offset, duration=duration)
            label, where = name or Path(track).name, str(track)
        results = self.auralise_layers(wave, layers, features, mode=mode, phase=phase, normalize=normalize,
                                       seed=seed)
        return self.write_results(results, out_dir, wave, track=where, label=label, offset=offset,
                                  normalize=normalize, audio_format=audio_format, subtype=subtype, figures=figures)

    def write_results(self, results: list, out_dir, wave: torch.Tensor, *, track: str, label: str, offset: float,
                      normalize: bool = True, audio_format: str = "wav", subtype: str = "PCM_16",
                      figures: bool = True) -> list[dict]:
        """Write one excerpt's `auralise_layers` results into `out_dir` as `auralise_file` does
        (the original `wave`, the clips, maps and figures, manifest.json last; every file
        atomically); returns the manifest rows. track: the track's name in the manifest; label:
        in titles; offset: the excerpt's start in the track, in seconds."""
        from .io.audio import save_audio
        from .io.files import write_json

        sr, first = self.sample_rate, results[0]
        out = Path(out_dir)
        header = {"track": track, "original": f"original.{audio_format}", "offset": offset,
                  "duration": wave.shape[0] / sr, "sample_rate": sr, "mode": first.mode, "phase": first.phase,
                  "seed": first.seed, "model": self.source}
        save_audio(out / header["original"], wave, sr, subtype=subtype, normalize=normalize)
        items = []
        for res in results:
            items += _write_layer(res, out, label, self.spectrogram, audio_format, subtype, figures)
        write_json(out / "manifest.json", {**header, "items": items})
        return [{**header, **item} for item in items]


def excerpt(waveform: torch.Tensor, offset: float, duration: float | None, sample_rate: int) -> torch.Tensor:
    """The samples of (n,) from `offset` seconds for `duration` seconds (None: to the end), as
    `Auraliser.auralise_file` takes them from a waveform."""
    start = int(round(offset * sample_rate))
    stop = None if duration is None else start + int(round(duration * sample_rate))
    wave = waveform[start:stop]
    if wave.numel() == 0:
        raise CnnauralError(f"offset {offset:g} s is past the end of the waveform")
    return wave


def _front_end_spectrogram(dn, spectrogram):
    """The Spectrogram for a model: its own front end when it has one (checked against a given
    one), else the given one."""
    if dn.takes_waveform:
        name, fe = dn.front_end[-1]
        if len(dn.front_end) != 1 or not isinstance(fe, Spectrogram):
            if spectrogram is None:
                kinds = " + ".join(type(m).__name__ for _, m in dn.front_end)
                raise CnnauralError(f"the model's front end ({kinds}) is not a cnnaural_ext.Spectrogram: give the "
                                    "Auraliser the equivalent Spectrogram (spectrogram=...)")
            return spectrogram
        if spectrogram is not None and spectrogram is not fe and spectrogram.config() != fe.config():
            raise CnnauralError(f"the spectrogram given differs from the model's own front end '{name}': "
                                "leave spectrogram out (the model's is used)")
        return fe
    if spectrogram is None:
        raise CnnauralError("Auraliser needs the Spectrogram the model was trained with (spectrogram=...), "
                            "unless the model's first module is one")
    if not isinstance(spectrogram, Spectrogram):
        raise CnnauralError(f"spectrogram must be a cnnaural_ext.Spectrogram (got {type(spectrogram).__name__})")
    return spectrogram


def layer_tag(layer) -> str:
    """The file-name part of a layer: layer<L> for a conv index or "output", layer_<name> for a
    module name (characters other than letters, digits, '.', '_' and '-' replaced)."""
    if isinstance(layer, int) or layer == "output":
        return f"layer{layer}"
    return "layer_" + re.sub(r"[^A-Za-z0-9._-]+", "_", str(layer))


def track_name(path) -> str:
    """A file-system-safe folder name for a track: its stem, odd characters replaced, no leading
    '.' or '_' (so no track folder can be named like the report's _analysis folder)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._") or "track"
    return name[:100]


def track_names(paths) -> list:
    """track_name of every path, made unique within one run: a repeated name (a.ogg in two
    folders, or names that differ only in characters track_name replaces) gets _2, _3, ..."""
    names, used = [], set()
    for path in paths:
        base = name = track_name(path)
        k = 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
    return names


def auralise_files(auraliser: Auraliser, tracks, out_root, *, on_track=None, **request) -> list:
    """`Auraliser.auralise_file` for every track into ``out_root/<track_names>/``.

    Every track and the request are checked before the first is auralised.

    Args:
        tracks: audio file paths.
        on_track: called as on_track(folder, rows) after each track (e.g. to print progress).
        request: keyword arguments of `auralise_file` (layers, features, offset, duration, ...).

    Returns:
        [(folder name, manifest rows)] in the order of `tracks`.
    """
    auraliser.check_file_request(**request)
    for track in tracks:
        if not Path(track).is_file():
            raise CnnauralError(f"audio file not found: {track}")
    entries = []
    for track, name in zip(tracks, track_names(tracks)):
        rows = auraliser.auralise_file(track, Path(out_root) / name, **request)
        entries.append((name, rows))
        if on_track is not None:
            on_track(name, rows)
    return entries


def _write_layer(res: AuralisationResult, out: Path, label: str, spec: Spectrogram, audio_format: str,
                 subtype: str, figures: bool) -> list[dict]:
    """The files of one layer's result; returns its manifest items."""
    from .io.audio import save_audio

    sr, tag = res.sample_rate, layer_tag(res.layer)
    if figures:
        from .io import figures as fig
    items = []
    for row, k in enumerate(res.features):
        stem = f"{tag}_feature{k:03d}"
        save_audio(out / f"{stem}.{audio_format}", res.audio[row], sr, subtype=subtype)
        if figures:
            fig.save_map(out / f"{stem}.png", res.maps[row], sample_rate=sr, hop_length=spec.hop_length,
                         frequencies=fig.input_frequencies(spec),
                         title=f"{label}: deconvolved, layer {res.layer}, feature {k}")
        items.append({"layer": res.layer, "feature": k, "audio": f"{stem}.{audio_format}",
                      "image": f"{stem}.png" if figures else None, **res.stats[row],
                      **(res.inversion[row] if res.inversion else {})})
    if figures:
        best = max(range(len(res.features)), key=lambda r: res.stats[r]["mean"])
        Y = spec.stft(res.audio[best].to(res.stft.device))
        fig.figure3(out / f"{tag}_figure.png", res.original, res.audio[best], res.stft, Y, sample_rate=sr,
                    hop_length=spec.hop_length,
                    title=f"{label}: layer {res.layer}, feature {res.features[best]} (most active)")
    return items


def griffin_lim(mag: torch.Tensor, audio: torch.Tensor, spec: Spectrogram, n_iter: int, istft_kw: dict,
                momentum: float = 0.99) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) on magnitudes (K, F, T), starting from `audio`'s phase."""
    prev = None
    for _ in range(max(0, int(n_iter))):
        rebuilt = spec.stft(audio)
        Z = rebuilt if prev is None else rebuilt - (momentum / (1 + momentum)) * prev
        prev = rebuilt
        audio = ops.masked_istft(Z, mag, mode="magnitude", **istft_kw)
    return audio


def _stats(a: torch.Tensor) -> list[dict]:
    """Per feature of a (K, h, w): max, mean and active fraction, read back in one transfer."""
    flat = a.reshape(a.shape[0], -1)
    table = torch.stack([flat.amax(1), flat.mean(1), (flat > 0).float().mean(1)], 1).tolist() if a.numel() else []
    return [{"max": m, "mean": u, "active": f} for m, u, f in table]
