"""Rewards as functions of a step's events: change the reward without touching the env.

Every env step produces :class:`StepEvents` (batched: B shoppers × k slots). A reward function
is any callable ``fn(events) -> (B,) array``; :class:`WeightedReward` is the configurable one:

.. math::

    r = w_c \\sum_i c_i + w_u \\sum_i u_i + w_\\$ \\sum_i u_i \\, \\text{price}_i
        + w_x \\sum_i u_i [\\text{new category}_i] + w_b \\sum_i u_i [i \\in \\text{basket}]
        + w_d \\frac{|\\text{categories shown}|}{k} + w_n \\sum_i c_i (-\\log \\text{pop}_i)
        + w_0 [\\text{no click}] + w_\\ell [\\text{left}]

with clicks :math:`c`, purchases :math:`u`. Negative weights are penalties (``no_click=-0.1``).
``cross_category`` is cross-selling: a purchase in a category the shopper had not touched in
the session. ``basket`` is bundle mode: a purchase of an item of the logged session's
remaining basket (the hidden intent), i.e. a slate that helps complete the real basket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from shopsim.errors import ShopsimError


@dataclass
class StepEvents:
    """What happened on one step, per shopper (B) and slot (k). Empty slots have item -1."""

    items: np.ndarray
    shown: np.ndarray
    clicked: np.ndarray
    purchased: np.ndarray
    price: np.ndarray
    category: np.ndarray
    new_category: np.ndarray
    """Category not touched earlier in the session (history, clicks, purchases)."""
    in_basket: np.ndarray
    """Item belongs to the logged session's remaining intent (basket) at step start."""
    popularity: np.ndarray
    """Log popularity share of the item (train)."""
    left: np.ndarray
    """(B,) the shopper left after this step."""
    step: np.ndarray
    """(B,) 1-based step index within the episode."""

    def row(self, b: int) -> dict[str, object]:
        """Plain-Python view of shopper ``b`` (what :class:`ShopperEnv` puts in ``info``)."""
        keep = self.shown[b]
        return {
            "items": self.items[b][keep].tolist(),
            "positions": (np.flatnonzero(keep) + 1).tolist(),
            "clicked": self.clicked[b][keep].tolist(),
            "purchased": self.purchased[b][keep].tolist(),
            "prices": self.price[b][keep].tolist(),
            "categories": self.category[b][keep].tolist(),
            "new_category": self.new_category[b][keep].tolist(),
            "in_basket": self.in_basket[b][keep].tolist(),
            "left": bool(self.left[b]),
            "step": int(self.step[b]),
        }


RewardFn = Callable[[StepEvents], np.ndarray]
"""Maps a step's events to a (B,) array of rewards."""


@dataclass
class WeightedReward:
    """A weighted sum of the terms in the module docstring; every weight defaults to 0 but click.

    :param click: per click.
    :param purchase: per purchase.
    :param revenue: per unit of price of purchased items.
    :param cross_category: per purchase in a category new to the session (cross-selling).
    :param basket: per purchase of an item of the logged basket (bundle mode).
    :param diversity: times the share of distinct categories in the shown slate.
    :param novelty: per click, times −log popularity (rewards long-tail clicks).
    :param no_click: once when the step had no click (use a negative weight).
    :param leave: once when the shopper leaves (use a negative weight).
    """

    click: float = 1.0
    purchase: float = 0.0
    revenue: float = 0.0
    cross_category: float = 0.0
    basket: float = 0.0
    diversity: float = 0.0
    novelty: float = 0.0
    no_click: float = 0.0
    leave: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ShopsimError(f"reward weight {name}={value!r}: expected a finite number")

    @property
    def slot_additive(self) -> bool:
        """True when the reward is a sum of per-slot terms (no diversity, no_click or leave
        term): then :meth:`slot_rewards` sums to the page reward, as item-level off-policy
        estimators require."""
        return not (self.diversity or self.no_click or self.leave)

    def slot_rewards(self, ev: StepEvents) -> np.ndarray:
        """(B, k) per-slot part of the reward: click, purchase, revenue, cross-category, basket
        and novelty terms of each slot's item."""
        c = ev.clicked.astype(np.float64)
        u = ev.purchased.astype(np.float64)
        r = self.click * c + self.purchase * u
        if self.revenue:
            r += self.revenue * u * ev.price
        if self.cross_category:
            r += self.cross_category * u * ev.new_category
        if self.basket:
            r += self.basket * u * ev.in_basket
        if self.novelty:
            r += self.novelty * c * -ev.popularity
        return r

    def __call__(self, ev: StepEvents) -> np.ndarray:
        c = ev.clicked.astype(np.float64)
        r = self.slot_rewards(ev).sum(1)
        if self.diversity:
            k = ev.items.shape[1]
            cats = np.where(ev.shown & (ev.category > 0), ev.category, -1)
            srt = np.sort(cats, axis=1)
            distinct = ((srt[:, 1:] != srt[:, :-1]) & (srt[:, 1:] >= 0)).sum(1) + (srt[:, 0] >= 0)
            r += self.diversity * distinct / k
        if self.no_click:
            r += self.no_click * (c.sum(1) == 0)
        if self.leave:
            r += self.leave * ev.left
        return r


def make_reward(spec: RewardFn | dict[str, float] | None) -> RewardFn:
    """A reward function from a callable, a dict of :class:`WeightedReward` weights, or None
    (clicks)."""
    if spec is None:
        return WeightedReward()
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(WeightedReward.__dataclass_fields__))
        if unknown:
            raise ShopsimError(
                f"reward: unknown term(s) {', '.join(unknown)}; "
                f"use {', '.join(WeightedReward.__dataclass_fields__)}"
            )
        return WeightedReward(**spec)
    if callable(spec):
        return spec
    raise ShopsimError(f"reward: expected a callable or a dict of weights, got {type(spec).__name__}")
