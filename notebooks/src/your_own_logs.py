# Source of notebooks/your_own_logs.ipynb (built by notebooks/build.py; edit this file, not the .ipynb)
# ruff: noqa: E402

# %% [markdown]
# # Your own logs: from a CSV export to a first comparison of recommenders
#
# Your shop's export will not have shopsim's column names. This notebook walks through what you
# do with it:
#
# 1. a CSV with unfamiliar columns (here: 40,000 real order lines of the UCI Online Retail data
#    set, renamed and re-formatted the way an ERP export might look);
# 2. tell shopsim which column is which (`--map`), and read the **prepare report**: every row
#    in is either an event out or a counted drop with its reason;
# 3. fix what the report reveals, prepare again;
# 4. fit the shopper simulator and read its **fidelity report**: is it good enough to trust?
# 5. a first comparison: supervised, collaborative-filtering and RL recommenders on the same
#    simulated test sessions, with 95% intervals.

# %% [markdown]
# ## Parameters
#
# `SHOPSIM_NB_BUDGET=tiny|full` (default `full`, the committed outputs), `SHOPSIM_NB_STEPS`
# (PPO training steps), `SHOPSIM_NB_EPISODES` (test sessions per policy), `SHOPSIM_NB_WORKDIR`
# (where the files go; default a fresh temporary folder).

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
PRESETS = {
    # ~6 minutes on one CPU thread
    "full": {
        "ppo_steps": 30_000,
        "n_envs": 16,
        "episodes": 1_500,
        "n_boot": 1_000,
        "encoder": {"epochs": 40, "progress": False},
        "simulator": {},
    },
    # a smoke test of every cell (CI)
    # (tiny: no BERT text, no comparison click models)
    "tiny": {
        "ppo_steps": 512,
        "n_envs": 4,
        "episodes": 60,
        "n_boot": 50,
        "encoder": {"epochs": 1, "text": "on", "use_text": False, "n_boot": 50, "progress": False},
        "simulator": {"baselines": False},
    },
}
SEED = 0
WORK = Path(os.environ.get("SHOPSIM_NB_WORKDIR") or tempfile.mkdtemp(prefix="shopsim-own-logs-"))

# %% [markdown]
# Check the parameters before any expensive work (one line: what is wrong, how to fix it).

# %%
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
B["ppo_steps"] = env_int("SHOPSIM_NB_STEPS", B["ppo_steps"])
B["episodes"] = env_int("SHOPSIM_NB_EPISODES", B["episodes"])
if not 128 <= B["ppo_steps"] <= 10_000_000:
    raise ShopsimError(f"SHOPSIM_NB_STEPS={B['ppo_steps']}: PPO steps must be in [128, 10,000,000]")
if not 20 <= B["episodes"] <= 100_000:
    raise ShopsimError(f"SHOPSIM_NB_EPISODES={B['episodes']}: test sessions must be in [20, 100,000]")
print(f"budget {BUDGET}: {B}; files in {WORK}")

# %% [markdown]
# ## 1. An export with unfamiliar column names
#
# We build it from the bundled UCI Online Retail sample (a UK gift shop, 2010–2011, CC BY 4.0):
# the same rows, with the columns renamed and the dates written day-first, as many exports do.
# Replace `orders_csv` by your own file and skip this cell.

# %%
import pandas as pd
from IPython.display import Markdown, display

from shopsim.data import sample_path

orders = pd.read_csv(sample_path("uci"), dtype=str, keep_default_na=False)
orders = orders.rename(
    columns={
        "InvoiceNo": "order_ref",
        "StockCode": "sku",
        "Description": "product_name",
        "Quantity": "qty",
        "InvoiceDate": "ordered_at",
        "UnitPrice": "unit_price",
        "CustomerID": "customer",
        "Country": "country",
    }
)
orders["ordered_at"] = pd.to_datetime(orders["ordered_at"]).dt.strftime("%d/%m/%Y %H:%M")
(WORK / "export").mkdir(parents=True, exist_ok=True)
orders_csv = WORK / "export" / "orders.csv"
orders.to_csv(orders_csv, index=False)
display(orders.head())

# %% [markdown]
# ## 2. Map the columns and prepare
#
# shopsim's generic `events` format needs a user, an item and a time per row; everything else
# is optional. Without a map it says what it is missing, in one line:

# %%
from shopsim.data import PrepareOptions, format_summary, prepare

try:
    prepare(orders_csv, PrepareOptions(format="events"), None)
except ShopsimError as err:
    print("ShopsimError:", err)

# %% [markdown]
# The map is `canonical=source` pairs — on the command line exactly these `--map` arguments:
#
# ```bash
# shopsim data prepare orders.csv --format events \
#     --map user_id=customer item_id=sku timestamp=ordered_at session_id=order_ref \
#           price=unit_price quantity=qty \
#     --default-event purchase --text-cols product_name \
#     --timestamp-format "%d/%m/%Y %H:%M" --out data/myshop
# ```
#
# Every row of this export is a purchase (`--default-event purchase`); an order is a session;
# the product name is the item's text for the BERT encoder. `prepare` writes the canonical
# tables and `report.json`, and prints a summary.

# %%
MAP = {  # canonical column: your column (the --map pairs above)
    "user_id": "customer",
    "item_id": "sku",
    "timestamp": "ordered_at",
    "session_id": "order_ref",
    "price": "unit_price",
    "quantity": "qty",
}
OPTIONS = {
    "format": "events",
    "column_map": MAP,
    "default_event": "purchase",
    "text_cols": ["product_name"],
    "timestamp_format": "%d/%m/%Y %H:%M",
}
first = prepare(orders_csv, PrepareOptions(**OPTIONS), WORK / "prepared_first")
print(format_summary(first.to_json()))
print("first example of each drop:", first.to_json()["examples"])

# %% [markdown]
# ## 3. Read the report, fix the export
#
# Two things stand out:
#
# * **a quarter of the rows dropped as `missing_user_id`** — these are guest checkouts, orders
#   without a customer number. Dropping them loses real baskets; each guest order can be its
#   own anonymous shopper instead.
# * **returns**: the export also holds cancelled orders (order numbers starting with `C`, with
#   negative quantities). A negative quantity is not a purchase, so prepare drops those rows
#   and counts them as `negative_quantity`; but it cannot know your business rules (a
#   cancellation could also be written with a positive quantity). We compare that count with
#   the export's cancelled order lines and remove the returns from the export ourselves.

# %%
from shopsim.data import SessionLog

events = SessionLog.load(WORK / "prepared_first").events
returns = orders["order_ref"].str.startswith("C")
print(
    f"dropped as negative_quantity: {first.to_json()['dropped'].get('negative_quantity', 0):,}; "
    f"prepared events with a negative quantity: {(events['quantity'] < 0).sum():,}; "
    f"export lines of cancelled orders: {returns.sum():,}"
)

fixed = orders[~returns].copy()
guest = fixed["customer"].str.strip() == ""
fixed.loc[guest, "customer"] = "guest-" + fixed.loc[guest, "order_ref"]
fixed_csv = WORK / "export" / "orders_fixed.csv"
fixed.to_csv(fixed_csv, index=False)
report = prepare(fixed_csv, PrepareOptions(**OPTIONS), WORK / "prepared")
summary = report.to_json()
print(format_summary(summary))
assert summary["rows_in"] == summary["rows_out"] + sum(summary["dropped"].values())  # nothing lost silently
print(
    f"guest orders kept as anonymous shoppers: {guest.sum():,} lines; "
    f"returns removed: {returns.sum():,} lines"
)

# %% [markdown]
# ## 4. The simulator and its fidelity report
#
# The experiment config takes the same options in its `data` section (a YAML file for
# `shopsim run` would hold the same keys). `run` chains prepare → encoder → simulator → agents →
# evaluation in one folder; we look at the stages one by one. First the fidelity report: the
# click model's AUC on held-out test events against popularity-only, metadata-only and
# history-only models (paired intervals: the simulator should beat each), and replayed sessions
# against real ones (steps, clicks and purchases per session; the smaller KS / Wasserstein, the
# closer).

# %%
import json

from shopsim.envs.fitting.report import fidelity_markdown
from shopsim.experiments.config import load_config
from shopsim.experiments.runner import run

cfg = load_config(
    {
        "seed": SEED,
        "data": {"source": str(fixed_csv), **OPTIONS},
        "encoder": B["encoder"],
        "simulator": B["simulator"],
        "shop": {"slate_size": 10, "n_candidates": 100},
        "reward": {"click": 1.0},
        "agents": {"ppo": {"steps": B["ppo_steps"]}, "dqn": {"steps": 0}, "n_envs": B["n_envs"]},
        "evaluation": {"episodes": B["episodes"], "n_boot": B["n_boot"], "reference_episodes": B["episodes"]},
    }
)
out = WORK / "run"
results = run(cfg, out, echo=lambda line: None)

fidelity = json.loads((out / "simulator" / "fidelity.json").read_text())
display(Markdown(fidelity_markdown(fidelity)))

# %% [markdown]
# ## 5. A first comparison
#
# Every policy played the same simulated test sessions. The table is `results.md` of the run
# folder: the return (clicks per session, the reward of this config) with its 95% interval, the
# paired difference to the **deployable reference** (the best supervised or CF ranker, chosen
# on validation sessions) and to the myopic click-model ranker, then CTR, purchase rate and
# revenue per session with their intervals.

# %%
from shopsim.experiments.reporting import results_markdown

display(Markdown(results_markdown(results)))

# %%
import matplotlib.pyplot as plt
import numpy as np

pols = results["policies"]
names = sorted(pols, key=lambda n: pols[n]["sim"]["return_mean"])
mean = np.array([pols[n]["sim"]["return_mean"] for n in names])
ci = np.array([pols[n]["sim"]["return_ci95"] for n in names])
kind_color = {"rl": "tab:red", "supervised": "tab:blue", "cf": "tab:green", "heuristic": "tab:gray"}
fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
for i, n in enumerate(names):
    ax.errorbar(mean[i], i, xerr=[[mean[i] - ci[i, 0]], [ci[i, 1] - mean[i]]], fmt="o", capsize=3,
                color=kind_color.get(pols[n]["kind"], "k"))  # fmt: skip
ax.set_yticks(range(len(names)), names)
ax.set_xlabel("clicks per simulated test session (95% CI)")
ax.set_title(
    f"{B['episodes']:,} test sessions; colour = kind (red RL, blue supervised, green CF, grey heuristic)"
)
fig.tight_layout()
plt.show()

deployable = results["references"]["deployable"]
if "ppo" in pols and "minus_deployable" in pols["ppo"]["sim"]:
    d = pols["ppo"]["sim"]["minus_deployable"]
    display(
        Markdown(
            f"PPO minus the deployable reference ({deployable}): {d['diff']:+.3f} clicks per session, "
            f"95% paired CI [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] over {d['episodes']:,} sessions."
        )
    )

# %% [markdown]
# **Next steps.** Everything above lives in the run folder (`results.json`, `results.md`,
# `plots/`, `config.yaml` — the resolved config to copy into a YAML file for `shopsim run`).
# From here: a reward that values purchases (see `reward_tuning.ipynb`), more training steps
# (`agents.ppo.steps`), and, before any of it goes live, off-policy evaluation on logs with
# propensities (`off_policy_evaluation.ipynb`).
