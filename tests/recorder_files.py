"""Test helper: a power-beam HDF5 file laid out as the OVRO-LWA data recorder writes it."""

from __future__ import annotations

import datetime as dt

import numpy as np

from sunspec.clock import CHAN_BW, FS, datetime_to_tag

T0 = datetime_to_tag(dt.datetime(2025, 6, 1, 20, 0, 0))


def write_recorder_file(path, *, chan0=600, nchan=64, navg=24, written=3000, count=4000,
                        gulp=1000, start=T0 + 7 * 24 * 8192, reduce_chan=1,
                        pols=("XX", "YY", "XY_real", "XY_imag"), seed=0):
    """A power-beam file laid out as the OVRO-LWA recorder writes it: ``count`` rows
    preallocated, ``written`` filled gulp by gulp with stamps ``time_tag + i * navg * 8192``
    as (int, frac) and values divided by navg; freq = CHAN_BW * (chan0 + 0.5) + k * CHAN_BW,
    averaged over ``reduce_chan`` channels. Returns (raw values (written, nchan, npol) as
    captured, spectrum start tags, freq)."""
    import h5py

    rng = np.random.default_rng(seed)
    freq = CHAN_BW * (chan0 + 0.5) + np.arange(nchan) * CHAN_BW
    freq = freq.reshape(-1, reduce_chan).mean(axis=1)
    raw = (rng.random((written, len(freq), len(pols)), dtype=np.float32) * 1e5).astype("<f4")
    step = navg * 8192
    tags = start + np.arange(written, dtype=np.int64) * step
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update({"ObserverID": 0, "ObserverName": "", "ProjectID": "", "SessionID": 0,
                        "StationName": "ovro-lwa", "FileCreation": "UTC 2025/06/01 20:00:00",
                        "FileGenerator": "lwahdf.py", "InputMetadata": "", "ConfigFile": "",
                        "CalDir": ""})
        obs = f.create_group("Observation1")
        obs.attrs.update({"TargetName": "", "Beam": 2, "sampleRate": 196e6, "tInt": navg / CHAN_BW,
                          "tInt_Units": "s", "LFFT": 4096, "nChan": len(freq),
                          "RBW": freq[1] - freq[0], "RBW_Units": "Hz"})
        tun = obs.create_group("Tuning1")
        tun["freq"] = freq.astype("<f8")
        tun["freq"].attrs["Units"] = "Hz"
        time = obs.create_dataset("time", (count,), dtype=np.dtype(
            {"names": ["int", "frac"], "formats": ["<i8", "<f8"]}))
        time.attrs.update({"format": "unix", "scale": "utc"})
        chunk = max(1, min(count, 32 * 1024**2 // 4 // len(freq)))
        ds = [tun.create_dataset(p, (count, len(freq)), "<f4", chunks=(chunk, len(freq)))
              for p in pols]
        f.swmr_mode = True
        for a in range(0, written, gulp):
            b = min(a + gulp, written)
            rec = np.empty(b - a, time.dtype)
            rec["int"], rec["frac"] = tags[a:b] // FS, (tags[a:b] % FS) / FS
            time[a:b] = rec
            for i, d in enumerate(ds):
                d[a:b, :] = raw[a:b, :, i] / np.float32(navg)
    return raw, tags, freq
