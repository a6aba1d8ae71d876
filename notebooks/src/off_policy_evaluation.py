# Source of notebooks/off_policy_evaluation.ipynb: built by notebooks/build.py; edit this, not the .ipynb
# ruff: noqa: E402

# %% [markdown]
# # Off-policy evaluation: what a new recommender would have earned, from the old one's logs
#
# Off-policy evaluation (OPE) estimates the value of a *target* policy from logs written by a
# different *logging* policy, by re-weighting the logged rewards with the ratio of the two
# policies' probabilities (importance sampling) and/or with a model of the reward (direct
# method, doubly robust). It only works when the logs recorded those probabilities
# (**propensities**) and when the logging policy showed what the target would show
# (**support**). This notebook checks both claims on data where the answer is known:
#
# 1. **The Open Bandit Dataset** (ZOZOTOWN): a uniform-random and a Thompson-sampling policy ran
#    side by side on the same fashion site, so each one's logged CTR is the ground truth for an
#    estimate computed from the *other's* logs. Every estimator, with its 95% interval, its
#    effective sample size (ESS) and shopsim's trust verdict.
# 2. **Simulator logs with known truth**: a shopper simulator fitted on the REES46 sample logs a
#    randomised A/B/n policy; every baseline's value is then estimated off-policy and compared
#    with its on-policy value in the same simulator.
# 3. **How the logging design changes what OPE can do**: the same estimators on logs of an
#    ε-greedy policy around one ranker — a typical production log — where most targets have
#    almost no support.

# %% [markdown]
# ## Parameters
#
# `SHOPSIM_NB_BUDGET=tiny|full` (default `full`, the committed outputs) sets every budget;
# `SHOPSIM_NB_EPISODES` overrides the number of simulated pages logged per design and
# `SHOPSIM_NB_WORKDIR` the folder of the stages (default: a fresh temporary folder).

# %%
import os
import tempfile
from pathlib import Path

# No progress bars in the saved outputs (set before shopsim, tqdm or transformers are imported).
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
import tqdm.auto
import tqdm.std

tqdm.auto.tqdm = tqdm.std.tqdm  # Jupyter's widget bars ignore TQDM_DISABLE; the plain ones honour it

BUDGET = os.environ.get("SHOPSIM_NB_BUDGET", "full")
# The encoder and simulator settings of each budget (the same in reward_tuning.ipynb, so
# the two notebooks can share SHOPSIM_NB_WORKDIR and its stages). Tiny: no BERT text, no
# comparison click models.
STAGES = {
    "full": {"encoder": {"epochs": 40, "progress": False}, "simulator": {}},
    "tiny": {
        "encoder": {"epochs": 1, "text": "on", "use_text": False, "n_boot": 50, "progress": False},
        "simulator": {"baselines": False},
    },
}
PRESETS = {
    # ~8 minutes of one CPU core
    "full": {
        "n_boot": 1_000,  # OBD intervals
        "sim_n_boot": 200,  # simulator-log intervals (every estimator × policy × design)
        "n_logged": 6_000,
        "repeats": 1,
        "truth_episodes": 2_000,
        **STAGES["full"],
    },
    # a smoke test of every cell (CI)
    "tiny": {
        "n_boot": 50,
        "sim_n_boot": 50,
        "n_logged": 300,
        "repeats": 1,
        "truth_episodes": 100,
        **STAGES["tiny"],
    },
}
EPSILON = 0.1  # share of uniformly random slates in both logging designs
NARROW_LOGGER = "popularity"  # the production-like logger of part 3: ε-greedy around this ranker
SEED = 0
WORK = Path(os.environ.get("SHOPSIM_NB_WORKDIR") or tempfile.mkdtemp(prefix="shopsim-ope-"))

# %% [markdown]
# Check the parameters before any expensive work (one line: what is wrong, how to fix it).

# %%
from shopsim.agents.registry import REGISTRY
from shopsim.errors import ShopsimError


def env_int(name: str, default: int) -> int:
    """An integer from the environment (``default`` when unset)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ShopsimError(f"{name}={raw!r}: expected a whole number, e.g. {name}={default}") from None


if BUDGET not in PRESETS:
    raise ShopsimError(f"SHOPSIM_NB_BUDGET={BUDGET!r}: unknown budget; use one of {', '.join(PRESETS)}")
B = dict(PRESETS[BUDGET])
B["n_logged"] = env_int("SHOPSIM_NB_EPISODES", B["n_logged"])
if not 100 <= B["n_logged"] <= 10_000_000:
    raise ShopsimError(f"SHOPSIM_NB_EPISODES={B['n_logged']}: logged pages must be in [100, 10,000,000]")
if not 0 < EPSILON <= 1:
    raise ShopsimError(f"EPSILON={EPSILON}: must be in (0, 1] so that every slate can be logged")
if (
    NARROW_LOGGER not in REGISTRY
    or not REGISTRY[NARROW_LOGGER].deployable
    or REGISTRY[NARROW_LOGGER].kind == "rl"
):
    raise ShopsimError(f"NARROW_LOGGER={NARROW_LOGGER!r}: use a deployable baseline from `shopsim policies`")
print(f"budget {BUDGET}: {B}; ε = {EPSILON}, narrow logger ε-greedy around {NARROW_LOGGER}; work in {WORK}")

# %% [markdown]
# ## 1. The Open Bandit Dataset sample
#
# shopsim ships the public OBD sample (CC BY 4.0, `shopsim.data.sample_path("obd")`): 10,000
# impressions of each policy, 80 items in 3 slots, each row with the logged item's propensity.
# `shopsim ope obd DIR` reads a folder with `random/all.csv` and `bts/all.csv`, so we unpack the
# bundled (gzip-compressed) copy first. Look at the propensities: the uniform policy shows each
# item with probability 1/80, while Thompson sampling concentrates on a few items — so the
# importance weights for estimating *uniform* from *BTS* logs range over four orders of
# magnitude, and the other direction is easy.

# %%
import gzip

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from shopsim.data import sample_path

obd_dir = WORK / "obd"
for policy in ("random", "bts"):
    (obd_dir / policy).mkdir(parents=True, exist_ok=True)
    for name in ("all", "item_context"):
        with gzip.open(sample_path("obd") / policy / f"{name}.csv.gz") as src:
            (obd_dir / policy / f"{name}.csv").write_bytes(src.read())
logs = {p: pd.read_csv(obd_dir / p / "all.csv", usecols=["item_id", "position", "click", "propensity_score"])
        for p in ("random", "bts")}  # fmt: skip
facts = {
    p: {"rows": len(d), "clicks": int(d.click.sum()), "CTR": d.click.mean(),
        "min propensity": d.propensity_score.min(), "max propensity": d.propensity_score.max()}
    for p, d in logs.items()
}  # fmt: skip
display(pd.DataFrame(facts).T)

fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(np.log10(logs["bts"].propensity_score), bins=50, color="tab:blue", alpha=0.8, label="BTS")
ax.axvline(np.log10(1 / 80), color="tab:red", label="uniform random (1/80)")
ax.set_xlabel("log10 propensity of the logged item at its slot")
ax.set_ylabel("rows")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Every single-slot estimator, both directions: IPS, self-normalised IPS, the direct method (a
# cross-fitted, shrunk CTR per item and slot), doubly robust and its variants (SNDR, Switch-DR,
# DR with optimistic shrinkage). Intervals are 95% bootstrap intervals over rows; the truth has
# its own interval (≈ 40 clicks per 10,000 impressions make it noisy). The trust column flags
# estimates whose weights make them unreliable (low ESS, one row carrying much of the weight) or
# that fall outside the possible range.

# %%
from shopsim.experiments.ope_obd import obd_markdown, run_obd

obd = run_obd(obd_dir, WORK / "obd_out", n_boot=B["n_boot"], seed=SEED)
display(Markdown(obd_markdown(obd)))

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, key in zip(axes, ("random_from_bts", "bts_from_random"), strict=True):
    d = obd[key]
    names = list(d["estimates"])
    y = np.arange(len(names))
    vals = np.array([d["estimates"][n]["value"] for n in names])
    ci = np.array([d["estimates"][n]["ci95"] for n in names])
    ok = np.array([d["estimates"][n]["trust"]["verdict"] == "ok" for n in names])
    t = d["truth"]
    ax.axvspan(*t["ci95"], color="0.85", label="truth's 95% CI")
    ax.axvline(t["value"], color="k", lw=1, label="truth (on-policy CTR)")
    for mask, color, label in ((ok, "tab:green", "trusted"), (~ok, "tab:orange", "flagged")):
        ax.errorbar(vals[mask], y[mask], xerr=[vals[mask] - ci[mask, 0], ci[mask, 1] - vals[mask]],
                    fmt="o", color=color, capsize=3, label=label)  # fmt: skip
    ax.set_yticks(y, names)
    target, behaviour = key.split("_from_")
    ax.set_title(f"{target} CTR from {behaviour} logs (ESS {d['diagnostics']['ess']:,.0f} of {d['rows']:,})")
    ax.set_xlabel("CTR")
    ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Simulator logs with known truth
#
# Real logs give one noisy truth per direction. A simulator gives as many as we like: fit it on
# the REES46 sample (prepare → encoder → simulator, the stages of `shopsim run`), then let
# `shopsim ope validate` (`run_validation`) log a **randomised A/B/n policy** — on each session
# one of the evaluated rankers chosen at random, with ε uniformly random slates — whose slate
# propensities are exact, estimate every ranker's expected **session return** (clicks per session)
# off-policy, and compare with the ranker's on-policy value played in the same simulator on other
# sessions.

# %%
from shopsim.envs.fitting.fit import fit_simulator
from shopsim.experiments import runner
from shopsim.experiments.config import load_config
from shopsim.experiments.ope_validate import ValidateConfig, run_validation

cfg = load_config(
    {
        "seed": SEED,
        "data": {"source": "sample:rees46", "format": "rees46", "split": [0.7, 0.1, 0.2]},
        "encoder": B["encoder"],
        "simulator": B["simulator"],
    }
)
data_dir = runner.prepare_stage(cfg, WORK / "data")
enc_dir = runner.encode_stage(cfg, data_dir, WORK / "encoder", echo=lambda line: None)
sim_dir = WORK / "simulator"
_, fidelity = fit_simulator(data_dir, enc_dir, sim_dir, cfg.simulator, reuse=True, progress=False)


def validate(behaviour: str, name: str) -> dict:
    """run_validation with this notebook's budgets; writes WORK/name/ope_validation.{json,md}."""
    vcfg = ValidateConfig(
        n_logged=B["n_logged"],
        repeats=B["repeats"],
        truth_episodes=B["truth_episodes"],
        epsilon=EPSILON,
        behaviour=behaviour,
        n_boot=B["sim_n_boot"],
        seed=SEED,
    )
    return run_validation(sim_dir, WORK / name, vcfg, data=data_dir)


ab = validate("mixture", "ope_ab")
print(ab["behaviour"])


# %%
def estimates_vs_truth(report: dict, title: str) -> None:
    """Each policy's session value: estimate (first log, 95% CI) against on-policy truth (95% CI)."""
    names = list(report["truth"])
    truth = np.array([report["truth"][n]["session"]["value"] for n in names])
    tci = np.array([report["truth"][n]["session"]["ci95"] for n in names])
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True, sharey=True)
    for ax, est in zip(axes, ("wpdis", "dr"), strict=True):
        first = report["repeats"][0]
        v = np.array([first[n]["session"][est]["value"] for n in names])
        ci = np.array([first[n]["session"][est]["ci95"] for n in names])
        ax.errorbar(truth, v, xerr=[truth - tci[:, 0], tci[:, 1] - truth], yerr=[v - ci[:, 0], ci[:, 1] - v],
                    fmt="o", capsize=3)  # fmt: skip
        for n, x, yv in zip(names, truth, v, strict=True):
            ax.annotate(n, (x, yv), textcoords="offset points", xytext=(5, 4), fontsize=8)
        lo, hi = min(truth.min(), np.nanmin(ci)), max(truth.max(), np.nanmax(ci))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="estimate = truth")
        ax.set_xlabel("on-policy truth (clicks per session)")
        ax.set_ylabel(f"{est} estimate")
        ax.set_title(f"{title}: {est}")
        ax.legend(loc="upper left")
    fig.tight_layout()
    plt.show()


def estimator_table(report: dict) -> pd.DataFrame:
    """Per session estimator: mean relative error, CI coverage and rank correlation over policies."""
    rows = {}
    for est, s in report["estimators"]["session"].items():
        t = report["trust"]["session"]["estimators"][est]
        rows[est] = {
            "mean relative error": round(s["rel_error_mean"], 3),
            "95% CI covers truth": f"{s['coverage']:.0%}",
            "Spearman (ranking of policies)": None if s["spearman"] is None else round(s["spearman"], 3),
            "trust flags": f"{t['flagged']}/{t['of']}"
            + (f" ({', '.join(t['reasons'])})" if t["flagged"] else ""),
        }
    return pd.DataFrame(rows).T


estimates_vs_truth(ab, "A/B/n logs")
display(estimator_table(ab))

# %% [markdown]
# ## 3. How the logging design changes what OPE can do
#
# Production logs usually come from one ranker with a little exploration. Here the logger is
# ε-greedy around `NARROW_LOGGER`: with probability 1 − ε its own slate, otherwise a uniformly
# random one. A target that ranks differently shows slates that this logger almost never shows,
# so its importance weights are either ~0 or enormous: the **effective sample size** collapses
# and the estimates become noise, or get flagged. The table compares the ESS of each target's
# session weights under the two designs — same number of logged pages.

# %%
narrow = validate(NARROW_LOGGER, "ope_narrow")
print(narrow["behaviour"])
estimates_vs_truth(narrow, f"ε-greedy around {NARROW_LOGGER}")
display(estimator_table(narrow))

# %%
names = list(ab["truth"])
ess = pd.DataFrame(
    {
        "ESS, A/B/n logs": [ab["repeats"][0][n]["session"]["diagnostics"]["ess"] for n in names],
        f"ESS, ε-greedy around {NARROW_LOGGER}": [
            narrow["repeats"][0][n]["session"]["diagnostics"]["ess"] for n in names
        ],
    },
    index=names,
)
display(ess.round(1))
ax = ess.plot.barh(figsize=(8, 0.4 * len(names) + 1.5), logx=True)
ax.set_xlabel("effective sample size of the session weights (log scale)")
ax.set_title(f"Same budget, different logging design ({B['n_logged']:,} logged pages)")
plt.tight_layout()
plt.show()

# %% [markdown]
# **What to take away.** With exact propensities and a logger that gives every target support
# (the A/B/n design), weighted importance sampling and doubly robust estimates land near the
# truth, and their intervals say how near. With a production-like ε-greedy logger, only the
# logger itself and policies that rank like it keep a usable ESS; for the rest the estimates are
# driven by a handful of sessions — which is exactly what the ESS and the trust flags report.
# If you plan to evaluate new recommenders off-policy, budget exploration into the logging
# policy *before* collecting the logs, and record the propensity of every slate you show.
