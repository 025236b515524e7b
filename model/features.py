"""Fixed-size audio features for the parameter network.

The extractor looks at a bounded number of analysis windows spread over the track (so a
60-minute file costs about as much as a 40-second one), computes level-normalised log-mel
statistics from them, and adds global descriptors (loudness, LRA, true peak, crest factor,
spectral tilt/centroid, stereo correlation/width). Everything is defined in Hz and seconds,
so any input rate from 8 kHz upwards gives the same feature layout.

Features are not differentiable (computed under ``torch.no_grad``): they only feed the
network, and the chain itself is what training differentiates through.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 384000

# Global descriptors: name -> (centre, scale). The feature vector holds (raw - centre) / scale,
# which puts typical material roughly in [-2, 2]; raw physical values come from describe().
DESCRIPTORS: dict[str, tuple[float, float]] = {
    "loudness_lufs": (-20.0, 10.0),
    "loudness_range_lu": (6.0, 5.0),
    "true_peak_dbtp": (-3.0, 6.0),
    "sample_peak_dbfs": (-3.0, 6.0),
    "rms_dbfs": (-20.0, 10.0),
    "crest_db": (12.0, 6.0),
    "peak_to_loudness_db": (12.0, 6.0),
    "spectral_centroid_hz": (1500.0, 1.0),  # special: log2(centroid / 1500)
    "spectral_tilt_db_per_oct": (-4.0, 2.0),
    "stereo_correlation": (0.5, 0.5),
    "stereo_width": (0.15, 0.15),
    "stereo_width_low": (0.15, 0.15),
    "stereo_width_mid": (0.15, 0.15),
    "stereo_width_high": (0.15, 0.15),
}

MEL_STATS = ("mean", "window_std", "frame_std", "flux")

_DB_FLOOR = -100.0          # floor for peak / RMS levels (dBFS)
_LUFS_FLOOR = -70.0         # BS.1770 absolute gate
_MEL_REL_FLOOR_DB = -80.0   # log-mel floor relative to the track's mean band level
_MEL_REL_CEIL_DB = 40.0
_MEL_SCALE_DB = 20.0        # log-mel dB values are divided by this
_TINY = 1e-20
_WIDTH_BANDS_HZ = (250.0, 4000.0)  # low | mid | high split for band widths
_TILT_BAND_HZ = (50.0, 16000.0)


def hz_to_mel(f: Tensor | float) -> Tensor | float:
    """HTK mel scale (scalar or tensor in Hz -> mel)."""
    if isinstance(f, Tensor):
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    """Inverse HTK mel scale (tensor in mel -> Hz)."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_band_edges_hz(n_mels: int, f_min: float, f_max: float) -> Tensor:
    """(n_mels + 2,) float64 band edges of the triangular mel filterbank: band m rises
    from edge m, peaks at edge m + 1 (its centre) and falls to edge m + 2."""
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2,
                          dtype=torch.float64)
    return mel_to_hz(mels)


def mel_filterbank(
    n_mels: int,
    n_fft: int,
    sample_rate: int,
    f_min: float,
    f_max: float,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Triangular mel filterbank defined in Hz, shape (n_mels, n_fft // 2 + 1).

    Each row sums to 1 (a weighted mean of the power-spectral density in the band), so white
    noise gives a flat mel spectrum whatever the rate or FFT size. A band narrower than the
    bin spacing gets its nearest bin; a band wholly above Nyquist is an all-zero row.
    """
    n_bins = n_fft // 2 + 1
    nyquist = sample_rate / 2.0
    freqs = torch.arange(n_bins, dtype=torch.float64) * (sample_rate / n_fft)
    edges = mel_band_edges_hz(n_mels, f_min, f_max)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    sums = fb.sum(dim=1)
    for m in range(n_mels):
        if sums[m] > 0:
            continue
        c = float(edges[m + 1])
        if c < nyquist:
            fb[m, int(round(c * n_fft / sample_rate))] = 1.0
    sums = fb.sum(dim=1, keepdim=True)
    fb = torch.where(sums > 0, fb / sums.clamp_min(1e-30), fb)
    return fb.to(device=device, dtype=dtype)


def _db(power_or_amp: Tensor, *, amplitude: bool, floor_db: float) -> Tensor:
    factor = 20.0 if amplitude else 10.0
    floor = 10.0 ** (floor_db / factor)
    return factor * torch.log10(power_or_amp.clamp_min(floor))


class FeatureExtractor(nn.Module):
    """Audio (batch, channels, samples) -> features (batch, feature_dim).

    Layout: ``4 * n_mels`` log-mel statistics (over-window mean of per-window frame means,
    std over windows of those means, mean per-window frame std, mean frame-to-frame flux;
    all in dB relative to the track's mean band level / 20) followed by
    ``len(DESCRIPTORS)`` scaled global descriptors. ``feature_names`` lists them in order.

    No learnable weights: the whole extractor is rebuilt from ``config()``.
    """

    def __init__(
        self,
        sample_rate_hz: int = 44100,
        n_mels: int = 64,
        n_windows: int = 8,
        window_seconds: float = 4.0,
        fft_seconds: float = 0.093,
        f_min: float = 30.0,
        f_max: float = 16000.0,
    ) -> None:
        super().__init__()
        if not MIN_SAMPLE_RATE <= int(sample_rate_hz) <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate_hz must be in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}], "
                             f"got {sample_rate_hz}")
        if int(n_mels) < 4:
            raise ValueError(f"n_mels must be >= 4, got {n_mels}")
        if int(n_windows) < 1:
            raise ValueError(f"n_windows must be >= 1, got {n_windows}")
        if not 0.5 <= float(window_seconds) <= 60.0:
            raise ValueError(f"window_seconds must be in [0.5, 60], got {window_seconds}")
        if not 0.005 <= float(fft_seconds) <= 0.5:
            raise ValueError(f"fft_seconds must be in [0.005, 0.5], got {fft_seconds}")
        if not 0.0 <= float(f_min) < float(f_max):
            raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
        self.sample_rate_hz = int(sample_rate_hz)
        self.n_mels = int(n_mels)
        self.n_windows = int(n_windows)
        self.window_seconds = float(window_seconds)
        self.fft_seconds = float(fft_seconds)
        self.f_min = float(f_min)
        self.f_max = float(f_max)
        self._fb_cache: dict[tuple, Tensor] = {}

    # ------------------------------------------------------------------ layout
    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-ready) that rebuild this extractor."""
        return {
            "sample_rate_hz": self.sample_rate_hz,
            "n_mels": self.n_mels,
            "n_windows": self.n_windows,
            "window_seconds": self.window_seconds,
            "fft_seconds": self.fft_seconds,
            "f_min": self.f_min,
            "f_max": self.f_max,
        }

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector."""
        return len(MEL_STATS) * self.n_mels + len(DESCRIPTORS)

    @property
    def feature_names(self) -> list[str]:
        """Name of each feature column, length feature_dim."""
        names = [f"mel_{stat}_{m:02d}" for stat in MEL_STATS for m in range(self.n_mels)]
        return names + list(DESCRIPTORS)

    def n_fft_for(self, sample_rate: int) -> int:
        """FFT size for a rate: the power of two closest to fft_seconds (>= 256)."""
        target = self.fft_seconds * sample_rate
        return max(256, 2 ** int(round(math.log2(target))))

    # ------------------------------------------------------------------ helpers
    def _filterbank(self, sample_rate: int, n_fft: int, device: torch.device,
                    dtype: torch.dtype) -> Tensor:
        key = (sample_rate, n_fft, str(device), dtype)
        fb = self._fb_cache.get(key)
        if fb is None:
            if len(self._fb_cache) > 16:
                self._fb_cache.clear()
            fb = mel_filterbank(self.n_mels, n_fft, sample_rate, self.f_min, self.f_max,
                                device=device, dtype=dtype)
            self._fb_cache[key] = fb
        return fb

    def _segments(self, x: Tensor, sample_rate: int) -> Tensor:
        """Pick the analysis windows: (batch, channels, samples) -> (batch, K, channels, L).

        K = min(n_windows, ceil(samples / L)) windows of L = window_seconds (or the whole
        input when shorter), centred at (k + 0.5) / K of the track, clamped inside it.
        """
        n = x.shape[-1]
        seg_len = min(n, max(1, int(round(self.window_seconds * sample_rate))))
        k = min(self.n_windows, math.ceil(n / seg_len))
        starts = []
        for i in range(k):
            centre = (i + 0.5) / k * n
            starts.append(int(min(max(round(centre - seg_len / 2), 0), n - seg_len)))
        return torch.stack([x[..., s:s + seg_len] for s in starts], dim=1)

    def _check_input(self, x: Tensor, sample_rate: int | None) -> int:
        if not isinstance(x, Tensor):
            raise ValueError(f"audio must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"audio must be (batch, channels, samples), got shape {tuple(x.shape)}")
        if x.shape[1] not in (1, 2):
            raise ValueError(f"audio must be mono or stereo, got {x.shape[1]} channels")
        if x.shape[0] < 1 or x.shape[-1] < 1:
            raise ValueError(f"audio is empty, shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"audio must be floating point, got {x.dtype}")
        sr = self.sample_rate_hz if sample_rate is None else sample_rate
        if isinstance(sr, Tensor) or not isinstance(sr, (int, float)) or sr != int(sr):
            raise ValueError(f"sample_rate must be an integer in Hz, got {sr!r}")
        sr = int(sr)
        if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz, "
                             f"got {sr}")
        return sr

    # ------------------------------------------------------------------ analysis
    @torch.no_grad()
    def analyze(self, x: Tensor, sample_rate: int | None = None) -> dict[str, Tensor]:
        """Raw analysis of (batch, channels, samples) audio.

        Returns a dict with every name in DESCRIPTORS -> (batch,) tensor in physical units
        (LUFS, LU, dBTP, dBFS, dB, Hz, dB/octave, correlation in [-1, 1], width in [0, 1]) and
        "mel_stats" -> (batch, 4, n_mels) log-mel statistics in dB (see class docstring).
        """
        sr = self._check_input(x, sample_rate)
        work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        segs = self._segments(x, sr).to(work_dtype)           # (B, K, C, L)
        from dsp.ranges import all_finite  # lazy: model -> dsp

        if not all_finite(segs):
            raise ValueError("audio contains NaN or Inf samples")
        batch, k, chans, seg_len = segs.shape
        device = segs.device

        n_fft = self.n_fft_for(sr)
        hop = n_fft // 4
        if seg_len < n_fft:
            segs_fft = torch.nn.functional.pad(segs, (0, n_fft - seg_len))
        else:
            segs_fft = segs
        window = torch.hann_window(n_fft, periodic=True, device=device, dtype=work_dtype)
        fb = self._filterbank(sr, n_fft, device, work_dtype)  # (M, F)
        freqs = torch.arange(n_fft // 2 + 1, device=device, dtype=work_dtype) * (sr / n_fft)

        band_idx = torch.bucketize(freqs, torch.tensor(_WIDTH_BANDS_HZ, device=device,
                                                       dtype=work_dtype))
        band_onehot = torch.nn.functional.one_hot(band_idx, 3).to(work_dtype)  # (F, 3)
        # one STFT over every window and channel; powers from the real/imaginary view
        spec = torch.stft(segs_fft.reshape(batch * k * chans, -1), n_fft, hop_length=hop, window=window,
                          center=False, return_complex=True)
        n_bins, n_frames = spec.shape[-2], spec.shape[-1]
        ri = torch.view_as_real(spec).reshape(batch, k, chans, n_bins, n_frames, 2)
        # re^2 + im^2 written out: a reduction over the size-2 last axis is ~10x slower
        power = ri[..., 0].square() + ri[..., 1].square()       # (B, K, C, F, T)
        p_mean = power.mean(dim=2)                               # (B, K, F, T)
        mel = torch.einsum("mf,bkft->bkmt", fb, p_mean)          # (B, K, M, T)
        psd = p_mean.sum(dim=(1, 3))                             # (B, F)
        if chans == 2:
            # |(L +- R) / 2|^2 = (|L|^2 + |R|^2 +- 2 Re(L conj R)) / 4
            left, right = ri[:, :, 0], ri[:, :, 1]
            cross = (left[..., 0] * right[..., 0] + left[..., 1] * right[..., 1]).sum(dim=(1, 3))
            both = power.sum(dim=(1, 4))                         # (B, C, F)
            pm = 0.25 * (both[:, 0] + both[:, 1] + 2.0 * cross)
            ps = 0.25 * (both[:, 0] + both[:, 1] - 2.0 * cross)
            band_mid = pm @ band_onehot
            band_side = ps.clamp_min(0.0) @ band_onehot
        else:
            band_mid = band_side = torch.zeros(batch, 3, device=device, dtype=work_dtype)

        out: dict[str, Tensor] = {}
        out["mel_stats"] = self._mel_stats(mel, fb)
        out.update(self._level_descriptors(segs, sr))
        out.update(self._spectral_descriptors(psd, freqs, sr))
        out.update(self._stereo_descriptors(segs, band_mid, band_side))
        return out

    def _mel_stats(self, mel: Tensor, fb: Tensor) -> Tensor:
        """(B, K, M, T) mel power -> (B, 4, M) dB statistics relative to the mean band level."""
        valid = (fb.sum(dim=1) > 0).to(mel.dtype)               # bands below Nyquist
        n_valid = valid.sum().clamp_min(1.0)
        ref = (mel.mean(dim=(1, 3)) * valid).sum(dim=-1) / n_valid   # (B,)
        ref = ref[:, None, None, None]
        floor = ref * 10.0 ** (_MEL_REL_FLOOR_DB / 10.0) + _TINY
        db = 10.0 * torch.log10(mel + floor) - 10.0 * torch.log10(ref + _TINY)
        db = db.clamp(_MEL_REL_FLOOR_DB, _MEL_REL_CEIL_DB)
        frame_mean = db.mean(dim=-1)                             # (B, K, M)
        frame_std = db.std(dim=-1, unbiased=False)
        if db.shape[-1] > 1:
            flux = (db[..., 1:] - db[..., :-1]).abs().mean(dim=-1)
        else:
            flux = torch.zeros_like(frame_mean)
        return torch.stack([
            frame_mean.mean(dim=1),
            frame_mean.std(dim=1, unbiased=False),
            frame_std.mean(dim=1),
            flux.mean(dim=1),
        ], dim=1)

    def _level_descriptors(self, segs: Tensor, sr: int) -> dict[str, Tensor]:
        """Loudness, LRA, peaks, RMS and crest factor over the analysis windows."""
        from dsp import true_peak  # lazy: model -> dsp
        from dsp.loudness import loudness_and_range

        batch, k, chans, seg_len = segs.shape
        joined = segs.permute(0, 2, 1, 3).reshape(batch, chans, k * seg_len)
        lufs, lra = loudness_and_range(joined, sr)
        lufs = torch.nan_to_num(lufs.to(segs.dtype), nan=_LUFS_FLOOR, neginf=_LUFS_FLOOR, posinf=20.0)
        lufs = lufs.clamp(_LUFS_FLOOR, 20.0)
        lra = torch.nan_to_num(lra.to(segs.dtype),
                               nan=0.0, neginf=0.0, posinf=40.0).clamp(0.0, 40.0)
        # true peak per window (joins between windows are not real samples), max over windows
        tp = true_peak(segs.reshape(batch * k, chans, seg_len), sr).to(segs.dtype)
        tp = torch.nan_to_num(tp, nan=_DB_FLOOR, neginf=_DB_FLOOR, posinf=40.0)
        tp = tp.reshape(batch, k).amax(dim=1).clamp(_DB_FLOOR, 40.0)
        peak = _db(segs.abs().amax(dim=(1, 2, 3)), amplitude=True, floor_db=_DB_FLOOR)
        rms = _db(segs.square().mean(dim=(1, 2, 3)), amplitude=False, floor_db=_DB_FLOOR)
        return {
            "loudness_lufs": lufs,
            "loudness_range_lu": lra,
            "true_peak_dbtp": tp,
            "sample_peak_dbfs": peak,
            "rms_dbfs": rms,
            "crest_db": peak - rms,
            "peak_to_loudness_db": tp - lufs,
        }

    def _spectral_descriptors(self, psd: Tensor, freqs: Tensor, sr: int) -> dict[str, Tensor]:
        """Centroid (Hz) and tilt (dB/octave, 1/f-weighted fit) of the long-term spectrum."""
        audible = (freqs >= 20.0).to(psd.dtype)
        p = psd * audible
        total = p.sum(dim=-1)
        eps = total * 1e-12 + _TINY
        centroid = ((p * freqs).sum(dim=-1) + 1500.0 * eps) / (total + eps)

        hi = min(_TILT_BAND_HZ[1], 0.95 * sr / 2.0)
        sel = (freqs >= _TILT_BAND_HZ[0]) & (freqs <= hi)
        f = freqs[sel]
        w = 1.0 / f                                              # equal weight per octave
        w = w / w.sum()
        xo = torch.log2(f)
        y = 10.0 * torch.log10(psd[:, sel] + (psd.mean(dim=-1, keepdim=True) * 1e-10 + _TINY))
        xm = (w * xo).sum()
        ym = (y * w).sum(dim=-1, keepdim=True)
        cov = ((xo - xm) * (y - ym) * w).sum(dim=-1)
        var = ((xo - xm).square() * w).sum().clamp_min(1e-12)
        return {"spectral_centroid_hz": centroid, "spectral_tilt_db_per_oct": cov / var}

    def _stereo_descriptors(self, segs: Tensor, band_mid: Tensor,
                            band_side: Tensor) -> dict[str, Tensor]:
        """Correlation (zero-lag, no mean removal) and side/(mid+side) energy widths."""
        batch = segs.shape[0]
        ones = torch.ones(batch, device=segs.device, dtype=segs.dtype)
        if segs.shape[2] == 1:
            zeros = torch.zeros_like(ones)
            return {"stereo_correlation": ones, "stereo_width": zeros, "stereo_width_low": zeros,
                    "stereo_width_mid": zeros, "stereo_width_high": zeros}
        left, right = segs[:, :, 0], segs[:, :, 1]
        ll = left.square().sum(dim=(1, 2))
        rr = right.square().sum(dim=(1, 2))
        lr = (left * right).sum(dim=(1, 2))
        denom = torch.sqrt(ll * rr)
        silent = denom <= _TINY
        corr = torch.where(silent, ones, lr / denom.clamp_min(_TINY)).clamp(-1.0, 1.0)
        mid_e = 0.25 * (ll + rr + 2 * lr)
        side_e = 0.25 * (ll + rr - 2 * lr)
        total = (mid_e + side_e)
        width = torch.where(total <= _TINY, torch.zeros_like(ones),
                            side_e.clamp_min(0.0) / total.clamp_min(_TINY))
        band_total = band_mid + band_side
        band_w = torch.where(band_total <= _TINY, torch.zeros_like(band_total),
                             band_side / band_total.clamp_min(_TINY))
        return {"stereo_correlation": corr, "stereo_width": width.clamp(0.0, 1.0),
                "stereo_width_low": band_w[:, 0], "stereo_width_mid": band_w[:, 1],
                "stereo_width_high": band_w[:, 2]}

    # ------------------------------------------------------------------ vector
    def vectorize(self, analysis: dict[str, Tensor]) -> Tensor:
        """analyze() dict -> (batch, feature_dim) scaled feature vector."""
        mel = analysis["mel_stats"] / _MEL_SCALE_DB               # (B, 4, M)
        cols = []
        for name, (centre, scale) in DESCRIPTORS.items():
            v = analysis[name]
            if name == "spectral_centroid_hz":
                cols.append(torch.log2(v.clamp_min(1.0) / centre))
            else:
                cols.append((v - centre) / scale)
        desc = torch.stack(cols, dim=-1)
        feats = torch.cat([mel.reshape(mel.shape[0], -1), desc], dim=-1)
        return torch.nan_to_num(feats, nan=0.0).clamp(-20.0, 20.0)

    @torch.no_grad()
    def forward(self, x: Tensor, sample_rate: int | None = None) -> Tensor:
        """Audio (batch, channels, samples) at ``sample_rate`` (default sample_rate_hz)
        -> features (batch, feature_dim), on x's device, in x's dtype."""
        return self.vectorize(self.analyze(x, sample_rate)).to(x.dtype)
