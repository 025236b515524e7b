"""How the master reaches listeners on common playback systems: simple, documented models.

Each system is a channel matrix (stereo as is, or the mono fold-down (L+R)/2 on both
speakers) followed by a magnitude response built from a few textbook filters (Butterworth
high/low-passes, an Audio-EQ-cookbook low shelf), normalised to 0 dB at 1 kHz. These are
analysis models only (numpy/scipy), not simulations of any product; the sources of each
curve are in README.md, "Translation models". For each system the report gives:

- ``loudness_lufs``: BS.1770 integrated loudness of the master through the system
  (the same meter as everywhere, :mod:`automaster.metering`), and its change from the master;
- ``pink_change_lu``: the change the same system makes to pink noise (a mix with the
  long-term slope of typical music, identical in both channels), for comparison;
- ``bands``: level (dB, mean power per channel) and share of the energy in seven bands;
- ``warnings``, each from a rule with a fixed threshold (constants below):

  * **low end lost** (:data:`LOW_END_HZ`, :data:`LOW_END_SHARE`, :data:`LOW_END_KEPT`):
    below 150 Hz carries at least 30% of the master's energy and the system reproduces at
    most 10% (-10 dB) of that energy;
  * **mono loss** (:data:`MONO_LOSS_DB`, :data:`MONO_BAND_SHARE`; the ``mono`` system):
    a band holding at least 1% of the energy loses 4 dB or more in the fold-down.
    Uncorrelated channels lose 3.0 dB in (L+R)/2 and identical ones nothing, so 4 dB
    means the band is net anti-phase (channel correlation below about -0.2);
  * **quieter than a balanced mix** (:data:`QUIETER_LU`): the master loses at least 3 LU
    more through the system than pink noise does, i.e. much of its loudness sits where
    the system does not play.

Energy shares and band levels come from one long-term power spectrum per channel pair
(Hann, 8192 points), weighted by each system's |H(f)|^2; loudness comes from filtering
the signal (``scipy.signal.sosfilt``, state carried between blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["System", "SYSTEMS", "BANDS", "analyze_playback", "analyze_array"]

BANDS: tuple[tuple[str, float, float], ...] = (
    ("sub", 20.0, 60.0), ("bass", 60.0, 150.0), ("low-mid", 150.0, 500.0),
    ("mid", 500.0, 2000.0), ("presence", 2000.0, 5000.0), ("brilliance", 5000.0, 10000.0),
    ("air", 10000.0, 20000.0))

LOW_END_HZ = 150.0
LOW_END_SHARE = 0.30
LOW_END_KEPT = 0.10
MONO_LOSS_DB = 4.0
MONO_BAND_SHARE = 0.01
QUIETER_LU = 3.0
NFFT = 8192
BLOCK = 1 << 18


@dataclass(frozen=True)
class System:
    """A playback model: ``mono`` fold-down or not, and filter sections:
    ("hp"|"lp", cutoff_hz, order) Butterworth, ("lowshelf", centre_hz, gain_db) RBJ S=1."""

    name: str
    label: str
    mono: bool
    sections: tuple[tuple[str, float, float], ...]

    def sos(self, sample_rate: int) -> np.ndarray:
        """(n, 6) second-order sections; an identity section when the model is flat."""
        from scipy.signal import butter

        parts = []
        nyq = 0.5 * sample_rate
        for kind, f, arg in self.sections:
            if kind in ("hp", "lp"):
                if f >= 0.95 * nyq:
                    continue  # above this rate's band: nothing to do
                parts.append(butter(int(arg), f, btype="highpass" if kind == "hp" else "lowpass",
                                    fs=sample_rate, output="sos"))
            elif kind == "lowshelf":
                parts.append(_low_shelf(f, arg, sample_rate)[None])
            else:
                raise ValueError(f"unknown section {kind}")
        sos = np.concatenate(parts) if parts else np.array([[1.0, 0, 0, 1.0, 0, 0]])
        # 0 dB at 1 kHz
        sos = sos.copy()
        sos[0, :3] /= 10.0 ** (self.gain_db(np.array([1000.0]), sample_rate, sos)[0] / 20.0)
        return sos

    def gain_db(self, freqs_hz: np.ndarray, sample_rate: int, sos: np.ndarray | None = None) -> np.ndarray:
        """|H(f)| in dB at ``freqs_hz`` (0 dB at 1 kHz)."""
        from scipy.signal import sosfreqz

        sos = self.sos(sample_rate) if sos is None else sos
        _, h = sosfreqz(sos, worN=np.asarray(freqs_hz, dtype=float), fs=sample_rate)
        return 20.0 * np.log10(np.maximum(np.abs(h), 1e-12))


def _low_shelf(f0: float, gain_db: float, sample_rate: int) -> np.ndarray:
    """Audio-EQ-cookbook low shelf, shelf slope S = 1: [b0 b1 b2 1 a1 a2]."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * f0 / sample_rate
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / 2.0 * math.sqrt(2.0)  # S = 1
    k = 2.0 * math.sqrt(a) * alpha
    b0 = a * ((a + 1) - (a - 1) * cw + k)
    b1 = 2 * a * ((a - 1) - (a + 1) * cw)
    b2 = a * ((a + 1) - (a - 1) * cw - k)
    a0 = (a + 1) + (a - 1) * cw + k
    a1 = -2 * ((a - 1) + (a + 1) * cw)
    a2 = (a + 1) + (a - 1) * cw - k
    return np.array([b0 / a0, b1 / a0, b2 / a0, 1.0, a1 / a0, a2 / a0])


# the models; their sources are in README.md, "Translation models"
SYSTEMS: tuple[System, ...] = (
    System("phone", "phone speaker", True, (("hp", 450.0, 4), ("lp", 12000.0, 2))),
    System("laptop", "laptop speakers", False, (("hp", 300.0, 4), ("lp", 10000.0, 2))),
    System("earbuds", "earbuds (loose fit)", False, (("hp", 100.0, 2),)),
    System("car", "car", False, (("lowshelf", 47.0, 12.0), ("hp", 25.0, 2))),
    System("club", "club PA", True, (("hp", 35.0, 4), ("lowshelf", 100.0, 6.0), ("lp", 16000.0, 2))),
    System("mono", "mono fold-down", True, ()),
)


class _Spectra:
    """Long-term auto and cross power spectra of a stereo (or mono) signal."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.buf = np.zeros((channels, 0))
        self.acc = np.zeros((3, NFFT // 2 + 1), dtype=complex)  # LL, RR, LR
        self.frames = 0
        self.win = np.hanning(NFFT)

    def add(self, x: np.ndarray) -> None:
        buf = np.concatenate([self.buf, x.astype(np.float64)], axis=1)
        n = buf.shape[1] // NFFT
        if n:
            seg = buf[:, :n * NFFT].reshape(buf.shape[0], n, NFFT) * self.win
            spec = np.fft.rfft(seg, axis=-1)
            left = spec[0]
            right = spec[1] if buf.shape[0] > 1 else spec[0]
            norm = (self.win ** 2).sum()
            self.acc[0] += (np.abs(left) ** 2).sum(axis=0) / norm
            self.acc[1] += (np.abs(right) ** 2).sum(axis=0) / norm
            self.acc[2] += (left * np.conj(right)).sum(axis=0) / norm
            self.frames += n
        self.buf = buf[:, n * NFFT:]

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P_LL, P_RR, P_LR) mean spectra; a short signal is zero-padded into one frame."""
        if self.frames == 0 and self.buf.shape[1]:
            pad = np.zeros((self.buf.shape[0], NFFT - self.buf.shape[1]))
            rest = self.buf
            self.buf = np.zeros((self.buf.shape[0], 0))
            self.add(np.concatenate([rest, pad], axis=1))
        n = max(self.frames, 1)
        return self.acc[0].real / n, self.acc[1].real / n, self.acc[2] / n


def _fold(x: np.ndarray, mono: bool) -> np.ndarray:
    if not mono or x.shape[0] == 1:
        return x
    m = x.mean(axis=0, keepdims=True)
    return np.repeat(m, x.shape[0], axis=0)


def _db(v: float) -> float | None:
    return round(10.0 * math.log10(v), 2) if v > 0 and math.isfinite(v) else None


def _pink_change_db(system: System, sample_rate: int) -> float:
    """Loudness change of pink noise (1/f power, identical channels) through the system:
    the K-weighted power ratio on a fine log grid from 20 Hz to min(20 kHz, 0.45 fs)."""
    from scipy.signal import sosfreqz

    from automaster.metering import k_weighting_sos

    f = np.geomspace(20.0, min(20000.0, 0.45 * sample_rate), 2000)
    df = np.gradient(f)
    _, k = sosfreqz(k_weighting_sos(sample_rate), worN=f, fs=sample_rate)
    h = 10.0 ** (system.gain_db(f, sample_rate) / 10.0)
    w = np.abs(k) ** 2 / f * df
    return float(10.0 * math.log10((w * h).sum() / w.sum()))


def analyze_playback(source, systems: tuple[System, ...] = SYSTEMS) -> dict[str, Any]:
    """Run a Source (``read(start, stop)`` -> (channels, n)) through every system model.

    Returns the JSON-ready ``translation.playback`` document: the master's loudness and band
    shares, and per system its loudness, band levels and warnings (module doc)."""
    from scipy.signal import sosfilt

    from automaster.metering import Meter

    sr, ch = int(source.sample_rate), int(source.channels)
    if ch not in (1, 2):
        raise ValueError(f"playback models take mono or stereo, got {ch} channels")
    master_meter = Meter(sr, ch, true_peak=False)
    spectra = _Spectra(ch)
    filters = []
    for s in systems:
        sos = s.sos(sr)
        zi = np.zeros((sos.shape[0], ch, 2))
        filters.append((s, sos, zi, Meter(sr, ch, true_peak=False)))
    for start in range(0, source.frames, BLOCK):
        x = np.asarray(source.read(start, min(start + BLOCK, source.frames)), dtype=np.float64)
        master_meter.process(x.astype(np.float32))
        spectra.add(x)
        for i, (s, sos, zi, meter) in enumerate(filters):
            if not s.sections:  # flat: only the fold-down
                meter.process(_fold(x, s.mono).astype(np.float32))
                continue
            y, zi_new = sosfilt(sos, _fold(x, s.mono), axis=-1, zi=zi)
            filters[i] = (s, sos, zi_new, meter)
            meter.process(y.astype(np.float32))
    p_ll, p_rr, p_lr = spectra.finish()
    freqs = np.fft.rfftfreq(NFFT, 1.0 / sr)
    stereo_power = 0.5 * (p_ll + p_rr)  # mean power per channel
    mono_power = 0.25 * (p_ll + p_rr + 2.0 * p_lr.real)  # (L+R)/2 on each speaker
    audible = (freqs >= 20.0) & (freqs <= 20000.0)
    total = float(stereo_power[audible].sum())
    master_lufs = master_meter.integrated_lufs()

    def band_stats(power: np.ndarray) -> dict[str, dict[str, Any]]:
        out = {}
        for name, lo, hi in BANDS:
            sel = (freqs >= lo) & (freqs < hi)
            e = float(power[sel].sum()) if sel.any() else 0.0
            out[name] = {"range_hz": [lo, hi], "level_db": _db(e),
                         "share": round(e / total, 4) if total > 0 else None}
        return out

    master_bands = band_stats(stereo_power)
    low = freqs < LOW_END_HZ
    low_master = float(stereo_power[low & audible].sum())
    low_share = low_master / total if total > 0 else 0.0
    doc: dict[str, Any] = {
        "master": {"loudness_lufs": _round(master_lufs), "bands": master_bands,
                   "share_below_150_hz": round(low_share, 4)},
        "thresholds": {"low_end_hz": LOW_END_HZ, "low_end_share": LOW_END_SHARE,
                       "low_end_kept": LOW_END_KEPT, "mono_loss_db": MONO_LOSS_DB,
                       "mono_band_share": MONO_BAND_SHARE, "quieter_lu": QUIETER_LU},
        "systems": {},
    }
    for s, sos, _, meter in filters:
        h2 = 10.0 ** (s.gain_db(np.maximum(freqs, 1e-3), sr, sos) / 10.0)
        base = mono_power if (s.mono and ch == 2) else stereo_power
        heard = base * h2
        lufs = meter.integrated_lufs()
        change = lufs - master_lufs if math.isfinite(lufs) and math.isfinite(master_lufs) else math.nan
        pink = _pink_change_db(s, sr)
        bands = band_stats(heard)
        for name, _, _ in BANDS:
            a, b = bands[name]["level_db"], master_bands[name]["level_db"]
            bands[name]["change_db"] = round(a - b, 2) if a is not None and b is not None else None
        warnings: list[str] = []
        kept = float(heard[low & audible].sum()) / low_master if low_master > 0 else 1.0
        if low_share >= LOW_END_SHARE and kept <= LOW_END_KEPT:
            warnings.append(f"below {LOW_END_HZ:g} Hz carries {100 * low_share:.0f}% of the energy "
                            f"and the {s.label} model keeps {100 * kept:.0f}% of it "
                            f"({10 * math.log10(max(kept, 1e-12)):.0f} dB)")
        if s.name == "mono" and ch == 2:
            losses = []
            for name, lo, hi in BANDS:
                sel = (freqs >= lo) & (freqs < hi)
                e_st, e_mo = float(stereo_power[sel].sum()), float(mono_power[sel].sum())
                if total > 0 and e_st / total >= MONO_BAND_SHARE and e_st > 0:
                    loss = -10.0 * math.log10(max(e_mo, 1e-30) / e_st)
                    if loss >= MONO_LOSS_DB:
                        amount = "all of it" if loss > 60.0 else f"{loss:.1f} dB"
                        losses.append(f"{amount} in the {_hz(lo)}-{_hz(hi)} band")
            if losses:
                warnings.append(f"the mono fold-down loses {'; '.join(losses)} (channels out of "
                                f"phase there)")
        if math.isfinite(master_lufs) and not math.isfinite(lufs):
            warnings.append(f"the {s.label} plays (almost) nothing of it: the loudness falls "
                            f"below the -70 LUFS gate")
        elif math.isfinite(change) and change - pink <= -QUIETER_LU:
            warnings.append(f"plays {pink - change:.1f} LU quieter on the {s.label} than a "
                            f"balanced (pink-noise) mix of the same loudness: "
                            f"{change:+.1f} LU against {pink:+.1f} LU")
        doc["systems"][s.name] = {
            "label": s.label, "mono": s.mono,
            "model": [list(sec) for sec in s.sections],
            "loudness_lufs": _round(lufs), "loudness_change_lu": _round(change),
            "pink_change_lu": _round(pink), "share_below_150_hz_kept": round(kept, 4),
            "bands": bands, "warnings": warnings,
        }
    return doc


def analyze_array(audio: np.ndarray, sample_rate: int,
                  systems: tuple[System, ...] = SYSTEMS) -> dict[str, Any]:
    """:func:`analyze_playback` of a (channels, samples) or (samples,) array."""
    from automaster.io import ArraySource

    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    return analyze_playback(ArraySource(x, sample_rate), systems)


def _round(v: float) -> float | None:
    return round(float(v), 2) if math.isfinite(v) else None


def _hz(f: float) -> str:
    return f"{f / 1000:g} kHz" if f >= 1000 else f"{f:g} Hz"


def analyze_file(path) -> dict[str, Any]:
    """:func:`analyze_playback` of an audio file as written (what the listener gets,
    decoded when lossy)."""
    from automaster.io import FileSource

    with FileSource(path) as src:
        return analyze_playback(src)
