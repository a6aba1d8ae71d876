"""The one registry of slate policies: name → how to build it, its kind, what it needs.

The runner (:mod:`shopsim.experiments.runner`), the studies, ``shopsim ope validate`` and the
tests all build policies from here, so adding a baseline touches this file only::

    register(PolicySpec("my_rule", "heuristic", lambda ctx: MyRule(ctx.slate_size),
                        description="what it does"))

Kinds follow results.json: ``rl`` (trained by the runner: :mod:`shopsim.agents.training`),
``supervised``, ``cf`` and ``heuristic``. A policy may *require* parts of the data — ``log``
(a prepared log to fit next-item models on) or ``impressions`` (a log that records what was
shown) — and the experiment config is checked against them before any stage runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from shopsim.agents.baselines.next_item import ALS, BPR, CoOccurrence, ItemKNN, Popularity
from shopsim.agents.baselines.slates import (
    ClickModelGreedy,
    CooccurrenceSlate,
    CtrSlate,
    HistoryScorerSlate,
    NonMyopicRule,
    PopularitySlate,
    RandomSlate,
    TwoTowerSlate,
)
from shopsim.agents.policy import SlatePolicy
from shopsim.data import SessionLog
from shopsim.errors import ShopsimError

PolicyKind = Literal["rl", "supervised", "cf", "heuristic"]
Requirement = Literal["log", "impressions"]

NEXT_ITEM_MODELS: dict[str, Callable[[int], Any]] = {
    "popularity": lambda seed: Popularity(),
    "cooccurrence": lambda seed: CoOccurrence(),
    "itemknn": lambda seed: ItemKNN(),
    "als": lambda seed: ALS(seed=seed),
    "bpr": lambda seed: BPR(seed=seed),
}
"""Next-item models (fitted on the train split of a log) by policy name: the offline side of the
``popularity``, ``cooccurrence`` and CF policies (held-out next-item metrics in results.json)."""


@dataclass
class PolicyContext:
    """What a policy factory may use: the slate size, the seed, and (lazily, fitted once) the
    next-item models of a prepared log."""

    slate_size: int
    seed: int = 0
    log: SessionLog | None = None
    _fitted: dict[str, Any] = field(default_factory=dict, repr=False)

    def next_item_model(self, name: str) -> Any:
        """The next-item model ``name`` fitted on the log's train split (fitted once, then cached)."""
        if name not in self._fitted:
            if self.log is None:
                raise ShopsimError(f"policy {name!r} needs a prepared log to fit on; give the data folder")
            self._fitted[name] = NEXT_ITEM_MODELS[name](self.seed).fit(self.log)
        return self._fitted[name]


@dataclass(frozen=True)
class PolicySpec:
    """One registered policy."""

    name: str
    """Name in results.json and configs."""
    kind: PolicyKind
    """``rl``, ``supervised``, ``cf`` or ``heuristic``."""
    build: Callable[[PolicyContext], SlatePolicy] | None
    """Factory of a ready policy (None for ``rl``: the runner trains it)."""
    description: str
    """One line for ``--help`` and the docs."""
    requires: frozenset[Requirement] = frozenset()
    """Data the policy needs (checked against the experiment config before it runs)."""
    default: bool = True
    """Part of an experiment when the config does not list its policies."""
    deployable: bool = True
    """Uses only what a shop could know (False: reads the shopper's hidden intent, a reference)."""

    def runs_on(self, have: set[str]) -> bool:
        """Whether the data at hand (``{"log", "impressions"}`` or part of it) meets :attr:`requires`."""
        return self.requires <= have


def _history(name: str) -> Callable[[PolicyContext], SlatePolicy]:
    return lambda ctx: HistoryScorerSlate(ctx.slate_size, ctx.next_item_model(name), name=name)


REGISTRY: dict[str, PolicySpec] = {}
"""Every policy by name, in the order reports list them."""


def register(spec: PolicySpec) -> PolicySpec:
    """Add a policy to :data:`REGISTRY` (a name can be registered once)."""
    if spec.name in REGISTRY:
        raise ValueError(f"policy {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


for _spec in (
    PolicySpec(
        "random", "heuristic", lambda c: RandomSlate(c.slate_size, seed=c.seed), "uniformly random slates"
    ),
    PolicySpec(
        "popularity",
        "heuristic",
        lambda c: PopularitySlate(c.slate_size),
        "popularity as of the shopper's time",
    ),
    PolicySpec(
        "cooccurrence",
        "cf",
        lambda c: CooccurrenceSlate(c.slate_size),
        "association rules from the last item",
    ),
    PolicySpec("itemknn", "cf", _history("itemknn"), "item-item cosine kNN (implicit)", frozenset({"log"})),
    PolicySpec("als", "cf", _history("als"), "implicit ALS matrix factorisation", frozenset({"log"})),
    PolicySpec("bpr", "cf", _history("bpr"), "implicit BPR matrix factorisation", frozenset({"log"})),
    PolicySpec(
        "bert_two_tower",
        "supervised",
        lambda c: TwoTowerSlate(c.slate_size),
        "the fine-tuned two-tower encoder",
    ),
    PolicySpec(
        "click_model_greedy",
        "heuristic",
        lambda c: ClickModelGreedy(c.slate_size),
        "the fitted click model, greedily",
    ),
    PolicySpec(
        "click_model_oracle",
        "heuristic",
        lambda c: ClickModelGreedy(c.slate_size, use_intent=True),
        "the click model with the shopper's hidden intent (a reference no deployable policy reaches)",
        deployable=False,
    ),
    PolicySpec(
        "non_myopic_rule",
        "heuristic",
        lambda c: NonMyopicRule(c.slate_size),
        "greedy on clicks, postponing likely purchases",
    ),
    PolicySpec(
        "ctr",
        "heuristic",
        lambda c: CtrSlate(c.slate_size),
        "impression click-through rate as of the shopper's time",
        frozenset({"impressions"}),
    ),
    PolicySpec("ppo", "rl", None, "PPO with the pointer policy and Plackett–Luce slates"),
    PolicySpec("dqn", "rl", None, "SlateQ (item-wise Q-values with the click model's choice)"),
):
    register(_spec)


def policy_names(kind: PolicyKind | None = None) -> list[str]:
    """Registered names (of one kind), in registry order."""
    return [n for n, s in REGISTRY.items() if kind is None or s.kind == kind]


def spec(name: str) -> PolicySpec:
    """The spec of ``name``; a clear error naming the registered policies otherwise."""
    if name not in REGISTRY:
        raise ShopsimError(f"unknown policy {name!r}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_policies(names: list[str], ctx: PolicyContext) -> dict[str, SlatePolicy]:
    """Ready policies for ``names`` (``rl`` names are skipped: the runner trains them)."""
    out: dict[str, SlatePolicy] = {}
    for name in names:
        s = spec(name)
        if s.build is not None:
            out[name] = s.build(ctx)
    return out
