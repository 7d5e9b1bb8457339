#!/usr/bin/env python3
"""Derive examples/data/mauna_loa_co2_weekly.csv from the copy of the Mauna
Loa weekly CO2 record that statsmodels distributes on PyPI
(statsmodels/datasets/co2/co2.csv; statsmodels says: "This is public
domain."). Keeps 1990-01-01 .. 2001-12-29, drops missing weeks (the gaps
exercise the planner's interpolation), and writes Unix milliseconds.

    /tmp/capvenv/bin/python make_example_data.py
"""
import csv
import datetime as dt
import os

import statsmodels
import statsmodels.datasets.co2 as co2

src = os.path.join(os.path.dirname(co2.__file__), "co2.csv")
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "data",
                   "mauna_loa_co2_weekly.csv")
rows = []
with open(src) as f:
    for r in csv.DictReader(f):
        d = dt.datetime.strptime(r["date"], "%Y%m%d").replace(tzinfo=dt.timezone.utc)
        if d.year < 1990 or not r["co2"]:
            continue
        rows.append((int(d.timestamp() * 1000), float(r["co2"])))
with open(out, "w") as f:
    f.write("# Mauna Loa weekly atmospheric CO2 (ppmv), 1990-2001, missing weeks dropped.\n")
    f.write("# Source: Keeling, C.D. and T.P. Whorf (2004), Atmospheric CO2 concentrations derived from\n")
    f.write("# flask air samples at sites in the SIO network, CDIAC, ORNL; as distributed in the PyPI\n")
    f.write(f"# package statsmodels {statsmodels.__version__} (statsmodels/datasets/co2). Licence: public domain\n")
    f.write("# (statsmodels: \"This is public domain.\"). Derived by sysmanage-capacity/reference/make_example_data.py.\n")
    f.write("unix_ms,co2_ppm\n")
    for t, v in rows:
        f.write(f"{t},{v}\n")
print(out, len(rows))
