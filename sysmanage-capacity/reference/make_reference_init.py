"""statsmodels' own Holt-Winters starting states and the SSE fit from them.

Reads the series of tests/data/statsmodels_ets.json and writes
tests/data/statsmodels_ets_init.json with, per case, the initial level,
trend and seasonal terms of ``ETSModel(..., initialization_method="heuristic")``
and the parameters and SSE of ``.fit()`` from those fixed states. Run it in
a venv with statsmodels (the versions are recorded in the output).
"""
import json
import os
import warnings

import numpy as np
import statsmodels
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

warnings.simplefilter("ignore")
here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(here, "..", "tests", "data")
src = json.load(open(os.path.join(data, "statsmodels_ets.json")))
cases = []
for c in src["cases"]:
    y = np.array(c["y"])
    m = c["season"]
    model = ETSModel(y, error="add", trend="add", seasonal="add",
                     seasonal_periods=m, initialization_method="heuristic")
    fit = model.fit(disp=False)
    cases.append({
        "name": c["name"],
        "season": m,
        "init": {
            "level": float(model.initial_level),
            "trend": float(model.initial_trend),
            "seasonal": [float(v) for v in np.asarray(model.initial_seasonal)],
        },
        "fitted_params": {
            "alpha": float(fit.params[0]),
            "beta": float(fit.params[1]),
            "gamma": float(fit.params[2]),
            "sse": float(np.sum(np.asarray(fit.resid) ** 2)),
        },
    })
out = {
    "versions": {"statsmodels": statsmodels.__version__, "numpy": np.__version__},
    "source": "statsmodels_ets.json series",
    "cases": cases,
}
with open(os.path.join(data, "statsmodels_ets_init.json"), "w") as f:
    json.dump(out, f, indent=1)
