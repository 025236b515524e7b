"""automaster/restore/_filters.py against scipy.signal, the reference it stands in for
(restoration avoids importing scipy.signal: 0.9 s of every master's start-up)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from automaster.restore._filters import (butter_sos, kaiser_lowpass, kaiser_order, notch_sos,
                                         sos_steady_state, sosfiltfilt)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("btype", ["lowpass", "highpass"])
@pytest.mark.parametrize("cutoff_hz,rate", [(20.0, 1378.125), (120.0, 44100.0), (9000.0, 48000.0)])
def test_butterworth_response_equals_scipy(order, btype, cutoff_hz, rate):
    ours = butter_sos(order, cutoff_hz, btype, rate)
    ref = signal.butter(order, cutoff_hz, btype=btype, fs=rate, output="sos")
    f = np.geomspace(1.0, rate / 2 * 0.999, 400)
    _, h_ours = signal.sosfreqz(ours, worN=f, fs=rate)
    _, h_ref = signal.sosfreqz(ref, worN=f, fs=rate)
    np.testing.assert_allclose(np.abs(h_ours), np.abs(h_ref), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(np.unwrap(np.angle(h_ours)), np.unwrap(np.angle(h_ref)), atol=1e-7)
    # physical check: -3 dB at the cut-off
    _, hc = signal.sosfreqz(ours, worN=[cutoff_hz], fs=rate)
    assert 20 * np.log10(abs(hc[0])) == pytest.approx(-3.0103, abs=1e-3)


@pytest.mark.parametrize("f0,q,rate", [(50.0, 10.0, 44100.0), (180.0, 60.0, 48000.0), (1000.0, 0.7, 8000.0)])
def test_notch_equals_scipy(f0, q, rate):
    b, a = signal.iirnotch(f0, q, fs=rate)
    np.testing.assert_allclose(notch_sos(f0, q, rate)[0], np.r_[b, a], rtol=1e-12, atol=1e-15)


def test_steady_state_equals_scipy():
    sos = signal.butter(4, 30.0, btype="highpass", fs=1400.0, output="sos")
    np.testing.assert_allclose(sos_steady_state(sos), signal.sosfilt_zi(sos), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("padlen", [0, 1, 57, 999])
def test_sosfiltfilt_equals_scipy(padlen):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1000)) + 0.3   # an offset: the edge states matter
    sos = np.concatenate([signal.butter(4, 25.0, btype="highpass", fs=1400.0, output="sos"),
                          np.r_[signal.iirnotch(150.0, 8.0, fs=1400.0)][None].reshape(1, 6)])
    ref = signal.sosfiltfilt(sos, x, axis=-1, padtype="odd", padlen=padlen)
    ours = sosfiltfilt(sos, x, padlen)
    assert ours.dtype == np.float64 and ours.shape == x.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(sosfiltfilt(sos, x[0], padlen), ref[0], rtol=1e-9, atol=1e-11)
    # float32 input: scipy extends it in float32, this in float64 (1e-7 relative apart)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(sosfiltfilt(sos, x32, padlen),
                               signal.sosfiltfilt(sos, x32, axis=-1, padtype="odd", padlen=padlen),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="padlen"):
        sosfiltfilt(sos, x, 1000)


@pytest.mark.parametrize("stop_db,width", [(90.0, 0.05), (40.0, 0.2), (15.0, 0.3)])
def test_kaiser_design_equals_scipy(stop_db, width):
    taps, beta = kaiser_order(stop_db, width)
    assert (taps, beta) == pytest.approx(signal.kaiserord(stop_db, width))
    rate = 44100.0
    np.testing.assert_allclose(kaiser_lowpass(taps, 2000.0, beta, rate),
                               signal.firwin(taps, 2000.0, window=("kaiser", beta), fs=rate),
                               rtol=1e-10, atol=1e-14)


def test_bad_designs_refused():
    with pytest.raises(ValueError):
        butter_sos(2, 30000.0, "lowpass", 44100.0)
    with pytest.raises(ValueError):
        butter_sos(2, 100.0, "bandpass", 44100.0)
    with pytest.raises(ValueError):
        notch_sos(0.0, 5.0, 44100.0)
    with pytest.raises(ValueError):
        kaiser_order(5.0, 0.1)
