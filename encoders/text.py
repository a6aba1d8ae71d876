"""Item text and structured attributes, per source format.

The item tower reads two things about an item: a **text** (fed to BERT) and a few
**categorical attributes** (embedded and summed). Both are built here from items.parquet, so
every format — even ID-only logs — yields something usable: an item with no text gets the
empty string (the tower then leans on attributes and, for warm items, its ID embedding).

Price band: the item's price decile *within its category* (or over the whole catalog when the
log has no categories), a coarse "cheap vs premium" signal that transfers across categories.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

N_PRICE_BANDS = 10

# Categorical attribute columns per format, most specific first (attribute match weighs the
# first most). Columns missing from a given items table are skipped.
ATTRIBUTE_COLUMNS: dict[str, list[str]] = {
    "rees46": ["category", "brand", "category_code"],
    "hm": ["product_type_name", "colour_group_name", "department_name", "category", "index_group_name"],
    "uci": [],
    "mind": ["subcategory", "category"],
    "obd": ["item_feature_1", "item_feature_2", "item_feature_3"],
    "events": ["category"],
}


def price_band(items: pd.DataFrame, n_bands: int = N_PRICE_BANDS) -> pd.Series:
    """Price decile (0..n_bands-1) of each item within its category; ``<NA>`` without price."""
    price = pd.to_numeric(items["price"], errors="coerce") if "price" in items else None
    if price is None or price.notna().sum() == 0:
        return pd.Series(pd.NA, index=items.index, dtype="Int64")
    group = items["category"].fillna("∅") if "category" in items else pd.Series("∅", index=items.index)
    pct = price.groupby(group).rank(pct=True)
    band = np.minimum((pct * n_bands).fillna(-1).astype(int), n_bands - 1)
    return pd.Series(band, index=items.index).where(price.notna()).astype("Int64")


def _join(parts: list[pd.Series], sep: str = ". ") -> pd.Series:
    frame = pd.concat([p.astype("string").str.strip() for p in parts], axis=1)
    return frame.apply(lambda r: sep.join(x for x in r if isinstance(x, str) and x), axis=1).astype(str)


def _col(items: pd.DataFrame, name: str) -> pd.Series:
    return items[name] if name in items else pd.Series(pd.NA, index=items.index, dtype="string")


def _band_words(items: pd.DataFrame) -> pd.Series:
    band = price_band(items)
    return band.map(lambda b: f"price level {int(b) + 1} of {N_PRICE_BANDS}" if pd.notna(b) else "")


def _rees46(items: pd.DataFrame) -> pd.Series:
    path = _col(items, "category_code").astype("string").str.replace(".", " > ", regex=False)
    return _join([path, _col(items, "brand"), _band_words(items)], sep=", ")


def _hm(items: pd.DataFrame) -> pd.Series:
    return _join(
        [
            _col(items, "prod_name"),
            _col(items, "product_type_name"),
            _col(items, "colour_group_name"),
            _col(items, "department_name"),
            _col(items, "detail_desc"),
        ]
    )


def _mind(items: pd.DataFrame) -> pd.Series:
    title_abstract = _col(items, "text")  # title. abstract (from news.tsv)
    return _join([_col(items, "category"), _col(items, "subcategory"), title_abstract])


def _plain(items: pd.DataFrame) -> pd.Series:
    return _col(items, "text").fillna("").astype(str)


TEXT_BUILDERS: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "rees46": _rees46,
    "hm": _hm,
    "uci": _plain,
    "mind": _mind,
    "obd": _plain,
    "events": _plain,  # the --text-cols template, joined at prepare time
}


def item_texts(items: pd.DataFrame, fmt: str) -> pd.Series:
    """The text BERT reads for each item ('' when the item has none)."""
    builder = TEXT_BUILDERS.get(fmt, _plain)
    return builder(items).fillna("").astype(str).reset_index(drop=True)


def item_attributes(items: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """Categorical attributes per item as integer codes (0 = missing), plus ``price_band``."""
    cols = [c for c in ATTRIBUTE_COLUMNS.get(fmt, ["category"]) if c in items]
    out: dict[str, np.ndarray] = {}
    for c in cols:
        codes, _ = pd.factorize(items[c].astype("string"), use_na_sentinel=True)
        out[c] = np.asarray(codes, dtype=np.int64) + 1
    band = price_band(items)
    out["price_band"] = band.fillna(-1).astype(int).to_numpy() + 1
    return pd.DataFrame(out, index=range(len(items)))


def price_features(items: pd.DataFrame, n_centers: int = 16, width: float = 0.35) -> np.ndarray:
    """Radial-basis features of log price (N × n_centers; zeros when the price is unknown).

    Nearby prices get overlapping features, so the item tower can express *price proximity*
    — which a dot product over a single price number cannot.
    """
    price = pd.to_numeric(items["price"], errors="coerce").to_numpy(dtype=float) if "price" in items else None
    if price is None or not np.isfinite(price).any():
        return np.zeros((len(items), n_centers), dtype=np.float32)
    logp = np.log1p(np.clip(price, 0, None))
    finite = np.isfinite(logp)
    centers = np.quantile(logp[finite], np.linspace(0, 1, n_centers))
    feats = np.exp(-(((logp[:, None] - centers[None, :]) / width) ** 2))
    feats[~finite] = 0.0
    return feats.astype(np.float32)
