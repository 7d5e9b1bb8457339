#!/usr/bin/env python3
"""Python timings to compare with benches/benches/capacity.rs (same data).

    /tmp/capvenv/bin/python sysmanage-capacity/reference/bench_reference.py

Prints the median wall time of each task over several runs, in ms. BLAS
and OpenMP are pinned to one thread, like the single-threaded Rust code (and
because oversubscribed BLAS threads on a busy 2-core machine make timings
swing by an order of magnitude).
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import statistics
import sys
import time
import warnings

import numpy as np
import pandas as pd
import sklearn
import statsmodels
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import PolynomialFeatures
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

N = 43_200
START_MS = 1_790_812_800_000
HORIZON = 168


def value(k, i):
    day = i / 1440.0
    hour = (i % 1440) / 60.0
    busy = np.exp(-((hour - 14.0) ** 2) / 10.0)
    noise = np.modf(i * 0.618033988749895 + k * 0.1)[0] - 0.5
    return (1.0 + k) * (0.3 + 0.004 * day + 0.3 * busy + 0.05 * noise)


i = np.arange(N)
T_MS = START_MS + 60_000 * i
METRICS = [value(k, i) for k in range(8)]


def median_ms(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def sysmanage_sklearn():
    """SysManage's _forecast_metric for 8 metrics: fit on hours since the first
    sample, predict 168 hourly points."""
    for y in METRICS:
        x = ((T_MS - T_MS[0]) / 3_600_000.0).reshape(-1, 1)
        pf = PolynomialFeatures(degree=2)
        model = LinearRegression().fit(pf.fit_transform(x), y)
        fut = (x[-1, 0] + np.arange(1, HORIZON + 1)).reshape(-1, 1)
        model.predict(pf.transform(fut))


def fourier_sklearn():
    """pandas hourly resample + scikit-learn on the same trend + Fourier design."""
    idx = pd.to_datetime(T_MS, unit="ms")
    for y in METRICS:
        hourly = pd.Series(y, index=idx).resample("1h").mean()
        n = len(hourly)
        t_ms = hourly.index.asi8 // 1_000_000
        def design(tt, centre, scale):
            u = ((tt - t_ms[0]) / 3_600_000.0 - centre) / scale
            cols = [u]
            for period, kmax in ((86_400_000, 4), (604_800_000, 3)):
                ph = 2 * np.pi * (tt % period) / period
                for k in range(1, kmax + 1):
                    cols += [np.cos(k * ph), np.sin(k * ph)]
            return np.column_stack(cols)
        c = (n - 1) / 2.0
        model = LinearRegression().fit(design(t_ms, c, c), hourly.values)
        fut = t_ms[-1] + 3_600_000 * np.arange(1, HORIZON + 1)
        model.predict(design(fut, c, c))


def hourly_series():
    idx = pd.to_datetime(T_MS, unit="ms")
    return [pd.Series(y, index=idx).resample("1h").mean().reset_index(drop=True) for y in METRICS]


HOURLY = hourly_series()


def ets_fit(method):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ETSModel(HOURLY[0], error="add", trend="add", seasonal="add", seasonal_periods=24,
                           initialization_method=method).fit(disp=False)
            res.forecast(HORIZON)
    return run


def ets_fit_8(method):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s in HOURLY:
                res = ETSModel(s, error="add", trend="add", seasonal="add", seasonal_periods=24,
                               initialization_method=method).fit(disp=False)
                res.forecast(HORIZON)
    return run


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"statsmodels {statsmodels.__version__}, pandas {pd.__version__}")
    rows = [
        ("sklearn PolynomialFeatures(2)+LinearRegression, 8 x 43,200 raw, +168 predictions", sysmanage_sklearn, 15),
        ("pandas resample + sklearn trend+Fourier, 8 x 43,200, +168 predictions", fourier_sklearn, 15),
        ("statsmodels ETSModel AAA m=24 fit, 1 x 720 hourly (heuristic init)", ets_fit("heuristic"), 7),
        ("statsmodels ETSModel AAA m=24 fit, 1 x 720 hourly (estimated init, default)", ets_fit("estimated"), 3),
        ("statsmodels ETSModel AAA m=24 fit + 168 forecasts, 8 x 720 hourly (heuristic init)", ets_fit_8("heuristic"), 3),
    ]
    for name, fn, runs in rows:
        print(f"{median_ms(fn, runs):10.2f} ms  {name}")
