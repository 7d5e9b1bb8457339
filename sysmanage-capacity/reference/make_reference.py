#!/usr/bin/env python3
"""Generate reference values for sysmanage-capacity's tests.

Runs scikit-learn and statsmodels on deterministic inputs and writes JSON
under ../tests/data/. CI never runs this script: the Rust tests read the
committed JSON. Re-run it (and commit the result) when changing the cases:

    python3 -m venv /tmp/capvenv
    /tmp/capvenv/bin/pip install statsmodels scikit-learn
    /tmp/capvenv/bin/python make_reference.py

Versions used are recorded in every file ("versions").
"""
import json
import math
import os
import sys

import numpy as np
import sklearn
import statsmodels
import scipy
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import PolynomialFeatures
import statsmodels.api as sm
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
VERSIONS = {
    "python": sys.version.split()[0],
    "numpy": np.__version__,
    "scipy": scipy.__version__,
    "scikit-learn": sklearn.__version__,
    "statsmodels": statsmodels.__version__,
}
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS


def write(name, payload):
    payload = {"versions": VERSIONS, **payload}
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")


# --------------------------------------------------------------------------
# SysManage's quadratic: PolynomialFeatures(2) + LinearRegression on hours
# since the first sample, exactly as SysManage's CapacityPlanner does.
# --------------------------------------------------------------------------
def sysmanage_poly2_case(name, t_ms, y):
    x = ((np.asarray(t_ms, dtype=np.int64) - t_ms[0]) / 1000.0 / 3600.0).reshape(-1, 1)
    pf = PolynomialFeatures(degree=2)
    xp = pf.fit_transform(x)
    model = LinearRegression().fit(xp, y)
    future_h = [1.0, 24.0, 168.0, float(x[-1, 0]) + 12.0]
    pred = model.predict(pf.transform(np.array(future_h).reshape(-1, 1)))
    return {
        "name": name,
        "t_ms": [int(v) for v in t_ms],
        "y": [float(v) for v in y],
        "intercept": float(model.intercept_),
        "coef": [float(c) for c in model.coef_],
        "r2": float(model.score(xp, y)),
        "future_hours": future_h,
        "predictions": [float(p) for p in pred],
    }


def poly2_cases():
    rng = np.random.default_rng(20261128)
    cases = []
    # SysManage-sized input: 12 samples a minute apart.
    t = 1_764_000_000_000 + np.arange(12) * 60_000
    y = 0.4 + 0.002 * np.arange(12) + rng.normal(0, 0.01, 12)
    cases.append(sysmanage_poly2_case("twelve_minutes", t, y))
    # Irregular timestamps over 5 days, curved growth with noise.
    t = 1_764_000_000_000 + np.sort(rng.integers(0, 5 * DAY_MS, 300))
    t[0] = 1_764_000_000_000
    h = (t - t[0]) / HOUR_MS
    y = 0.3 + 0.002 * h + 0.00001 * h**2 + rng.normal(0, 0.02, t.size)
    cases.append(sysmanage_poly2_case("irregular_5_days", t, y))
    # 30 days of minute samples (43,200) with a daily cycle.
    # Generated, not stored: the Rust test rebuilds it from this formula
    # (golden-ratio pseudo-noise, so no RNG has to match).
    i = np.arange(43_200)
    t = 1_764_000_000_000 + i * 60_000
    h = i / 60.0
    noise = np.modf(i * 0.6180339887498949)[0] - 0.5
    y = 0.35 + 0.004 * h / 24 + 0.15 * np.sin(2 * np.pi * h / 24) + 0.06 * noise
    case = sysmanage_poly2_case("minutes_30_days", t, y)
    case["t_ms"] = []
    case["y"] = []
    case["generated"] = "t = 1764000000000 + 60000 i; h = i / 60; y = 0.35 + 0.004 h / 24 + 0.15 sin(2 pi h / 24) + 0.06 (frac(0.6180339887498949 i) - 0.5), i < 43200"
    cases.append(case)
    write("sklearn_poly2.json", {"tolerance": 1e-9, "cases": cases})


# --------------------------------------------------------------------------
# OLS regressions on the same design the Rust models build.
# --------------------------------------------------------------------------
def design(n, start_ms, step_ms, degree, harmonics, idx):
    centre = (n - 1) / 2.0
    scale = max(centre, 1.0)
    rows = []
    for i in idx:
        u = (i - centre) / scale
        row = [u**d for d in range(degree + 1)]
        for period, k in harmonics:
            base = start_ms % period
            tt = math.fmod(base + i * step_ms, period)
            ang = 2 * math.pi * k * tt / period
            row += [math.cos(ang), math.sin(ang)]
        rows.append(row)
    return np.array(rows)


def ols_case(name, kind, start_ms, step_ms, y, degree, harmonics, horizons):
    n = len(y)
    X = design(n, start_ms, step_ms, degree, harmonics, range(n))
    res = sm.OLS(np.asarray(y), X).fit()
    X0 = design(n, start_ms, step_ms, degree, harmonics, [n - 1 + h for h in horizons])
    pred = res.get_prediction(X0)
    return {
        "name": name,
        "model": kind,
        "start_ms": int(start_ms),
        "step_ms": int(step_ms),
        "y": [float(v) for v in y],
        "params": [float(p) for p in res.params],
        "sigma2": float(res.scale),
        "horizons": horizons,
        "mean": [float(v) for v in pred.predicted_mean],
        "se_obs": [float(v) for v in np.sqrt(pred.se_mean**2 + res.scale)],
    }


def ols_cases():
    rng = np.random.default_rng(7)
    start = 1_764_028_800_000  # a UTC midnight
    cases = []
    n = 24 * 21
    i = np.arange(n)
    y = (0.4 + 0.0005 * i + 0.15 * np.sin(2 * np.pi * i / 24) + 0.05 * np.cos(2 * np.pi * i / 168)
         + rng.normal(0, 0.02, n))
    harm = [(DAY_MS, k) for k in range(1, 5)] + [(WEEK_MS, k) for k in range(1, 4)]
    cases.append(ols_case("fourier_3_weeks_hourly", "fourier", start, HOUR_MS, y, 1, harm, [1, 5, 24, 100, 168]))
    n = 24 * 5
    i = np.arange(n)
    y = 100 + 0.8 * i + 20 * np.sin(2 * np.pi * i / 24) + rng.normal(0, 3, n)
    harm = [(DAY_MS, k) for k in range(1, 5)]
    cases.append(ols_case("fourier_5_days_daily_only", "fourier", start + 3 * HOUR_MS, HOUR_MS, y, 1, harm, [1, 12, 48]))
    n = 60
    y = 5 + 0.1 * np.arange(n) + rng.normal(0, 0.5, n)
    cases.append(ols_case("linear_60", "linear", start, HOUR_MS, y, 1, [], [1, 10, 168]))
    cases.append(ols_case("poly2_60", "poly2", start, HOUR_MS, y, 2, [], [1, 10, 168]))
    write("statsmodels_ols.json", {"tolerance": 1e-9, "cases": cases})


# --------------------------------------------------------------------------
# ETS(A,A,A) against statsmodels' ETSModel (not ExponentialSmoothing).
# --------------------------------------------------------------------------
def heuristic_init(y, m):
    """Mirror of EtsInit::heuristic in src/model/smoothing.rs."""
    y = np.asarray(y)
    mean1 = float(np.mean(y[:m]))
    mean2 = float(np.mean(y[m:2 * m]))
    trend = (mean2 - mean1) / m
    level = mean1 - trend * (m + 1) / 2.0
    seasonal = [float(y[j] - (level + trend * (j + 1))) for j in range(m)]
    return level, trend, seasonal


def ets_case(name, y, m, params, horizons):
    import pandas as pd
    y = pd.Series(np.asarray(y, dtype=float))
    level, trend, seasonal = heuristic_init(y, m)
    # statsmodels orders initial_seasonal as s_{-1}, ..., s_{-m}? It takes
    # them in "time order" for 'known': element j applies to observation j.
    # Both orders are tried below and the one reproducing the recursion is kept.
    def model(seas):
        return ETSModel(y, error="add", trend="add", seasonal="add", seasonal_periods=m,
                        initialization_method="known", initial_level=level,
                        initial_trend=trend, initial_seasonal=np.array(seas))
    # Our own recursion, to pick the orientation.
    ring = list(seasonal)
    lv, tr = level, trend
    ours = []
    for t, yt in enumerate(y):
        s = ring[t % m]
        mu = lv + tr + s
        e = yt - mu
        ours.append(mu)
        lv = lv + tr + params[0] * e
        tr = tr + params[1] * e
        ring[t % m] = s + params[2] * e
    chosen = None
    for order in ("as_is", "reversed"):
        seas = seasonal if order == "as_is" else seasonal[::-1]
        res = model(seas).smooth(np.array(params))
        if np.allclose(np.asarray(res.fittedvalues), ours, rtol=0, atol=1e-9):
            chosen = (order, res, seas)
            break
    assert chosen is not None, "neither seasonal orientation reproduces the recursion"
    order, res, seas = chosen
    pred = res.get_prediction(start=len(y), end=len(y) + max(horizons) - 1)
    frame = pred.summary_frame(alpha=0.05)
    fit = model(seas).fit(disp=False)
    hidx = [h - 1 for h in horizons]
    return {
        "name": name,
        "season": m,
        "y": [float(v) for v in y],
        "init": {"level": level, "trend": trend, "seasonal": seasonal},
        "statsmodels_initial_seasonal_order": order,
        "params": {"alpha": params[0], "beta": params[1], "gamma": params[2]},
        "fitted": [float(v) for v in res.fittedvalues],
        "sse": float(res.sse),
        "mse": float(res.mse),
        "horizons": horizons,
        "forecast": [float(frame["mean"].iloc[i]) for i in hidx],
        "pi_lower": [float(frame["pi_lower"].iloc[i]) for i in hidx],
        "pi_upper": [float(frame["pi_upper"].iloc[i]) for i in hidx],
        "fitted_params": {
            "alpha": float(fit.smoothing_level),
            "beta": float(fit.smoothing_trend),
            "gamma": float(fit.smoothing_seasonal),
            "sse": float(fit.sse),
        },
    }


def ets_cases():
    rng = np.random.default_rng(11)
    cases = []
    m = 24
    n = 24 * 14
    i = np.arange(n)
    y = 50 + 0.05 * i + 8 * np.sin(2 * np.pi * i / m) + 3 * np.cos(4 * np.pi * i / m) + rng.normal(0, 1.0, n)
    cases.append(ets_case("hourly_14_days", y, m, [0.3, 0.02, 0.15], [1, 2, 23, 24, 25, 47, 48, 72, 168]))
    m = 7
    n = 7 * 12
    i = np.arange(n)
    y = 200 - 0.5 * i + 30 * (i % 7 >= 5) + rng.normal(0, 4, n)
    cases.append(ets_case("daily_12_weeks_weekly_season", y, m, [0.5, 0.1, 0.3], [1, 6, 7, 8, 14, 21]))
    write("statsmodels_ets.json", {
        "interval_level": 0.95,
        "tolerance_smooth": 1e-9,
        "note": "forecasts follow ETSModel; ExponentialSmoothing.forecast in statsmodels 0.15 "
                "mis-indexes the season at horizons that are multiples of it",
        "cases": cases,
    })


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    poly2_cases()
    ols_cases()
    ets_cases()
    print("wrote", sorted(os.listdir(OUT)), VERSIONS)
