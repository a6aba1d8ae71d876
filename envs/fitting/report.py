"""The fidelity report of a simulator fit rendered as a short Markdown summary (what
``shopsim simulator fit`` and ``shopsim quickstart`` print)."""

from __future__ import annotations

from typing import Any

MIN_AUC_POSITIVES = 10
"""Held-out positives an AUC needs before the summary prints it as a number: with fewer (a
handful of test purchases) it rests on a few ranks and says little, so the summary says
"too few purchases (n=…) for an AUC" instead (fidelity.json keeps the value, marked
``auc_usable: false``)."""


def fidelity_markdown(report: dict[str, Any]) -> str:
    """The fidelity report as a short Markdown summary (what the CLI prints)."""
    held = report["click"]["held_out"]
    lines = [
        f"click model on held-out test events ({report['click']['test_positives']:,} clicks / "
        f"{report['click']['test_rows']:,} rows; negatives: {report['click']['negatives']})",
        "",
        "| model | AUC [95% CI] | AUC − popularity (paired 95% CI) | log-loss |"
        + (" per-impression AUC | ECE |" if "ece" in held else ""),
        "|---|---|---|---|" + ("---|---|" if "ece" in held else ""),
    ]
    diff = held.get("auc_minus_popularity", {})
    for name in held["auc"]:
        lo, hi = held["auc_ci95"][name]
        d = diff.get(name)
        vs = f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" if d else "—"
        row = (
            f"| {name} | {held['auc'][name]:.3f} [{lo:.3f}, {hi:.3f}] | {vs} | {held['log_loss'][name]:.4f} |"
        )
        if "ece" in held:
            row += f" {held['auc_per_impression'][name]:.3f} | {held['ece'][name]:.4f} |"
        lines.append(row)
    pur = report["purchase"]
    if pur["mode"] == "model":
        a = pur["held_out"]["auc"]
        n = pur["test_positives"]
        fitted = f"fitted on {pur['fit_split'].split(' ')[0]}"
        # a report written before auc_usable existed: the same rule on its count
        if pur.get("auc_usable", n >= MIN_AUC_POSITIVES):
            what = (
                f"AUC {a['model']:.3f} vs item purchase rate {a['item_purchase_rate']:.3f} "
                f"({n} test purchases; {fitted})"
            )
        else:
            what = f"too few purchases (n={n}) for an AUC (needs ≥ {MIN_AUC_POSITIVES} in test; {fitted})"
        lines += ["", f"purchase model: {what}"]
    else:
        lines += ["", f"purchases: {pur['mode']} — {pur['why']}"]
    rp = report["replay"]
    lines += ["", f"replayed {rp['sessions']:,} test sessions ({rp['policy']}): simulated vs real"]
    for name in ("steps", "clicks", "purchases"):
        r = rp[name]
        lines.append(
            f"  {name:9s} per session: sim {r['sim_mean']:.3f} vs real {r['real_mean']:.3f} "
            f"(KS {r['ks']:.3f}, Wasserstein {r['wasserstein']:.3f})"
        )
    if "category_mix" in rp:
        lines.append(f"  category mix: total variation {rp['category_mix']['total_variation']:.3f}")
    cal = report["calibration"]
    lines.append(f"  click offset: {cal['click_offset']} ({cal['kind'].split(' ')[0]})")
    dyn = report.get("dynamics", {})
    if "leave_hazard_by_step" in dyn:
        hz = dyn["leave_hazard_by_step"]
        c = dyn["continuation"]
        rv = dyn["purchase_by_repeat_views"]
        lines.append(
            "dynamics in the train logs: leave hazard step 1 "
            f"{hz['1']['rate']:.2f} → step 5 {hz['5']['rate']:.2f}; continuation after a purchase "
            f"{c['after_purchase']['rate']:.2f} vs {c['after_other']['rate']:.2f}; "
            "purchase rate by earlier views of the item"
            f" {rv['0']['rate']:.3f} / {rv['1']['rate']:.3f} / {rv['2+']['rate']:.3f}; "
            f"same-category next step ×{dyn['same_category_next']['stickiness']} popularity"
        )
    if "ctr_by_category_history" in dyn:
        cb = dyn["ctr_by_category_history"]
        lines.append(
            "dynamics: CTR by the user's earlier clicks in the item's category "
            + ", ".join(f"{k}: {v['rate']:.3f} (n {v['n']})" for k, v in cb.items())
        )
    if "basket_lift" in dyn:
        bl = dyn["basket_lift"]
        lines.append(
            f"dynamics: {bl['pairs_bought_together_twice']:,} item pairs bought together ≥ 2 times, "
            f"median lift {bl['median_lift']} (one purchase raises another's odds)"
        )
    return "\n".join(lines)
