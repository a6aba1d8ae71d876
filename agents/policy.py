"""The one protocol every slate policy follows (RL agents and baselines alike).

``predict`` has the shape of SB3's ``PolicyPredictor``, so ``stable_baselines3``'s
``evaluate_policy`` and shopsim's evaluator run any of them on the same envs and seeds:

    slate, state = policy.predict(obs, state=None, episode_start=None, deterministic=True)

``obs`` is the env's Dict observation (one shopper, or a batch with a leading axis); ``slate``
holds candidate indices, slot 1 first. Stochastic policies also give
``slate_log_prob(obs, slate)`` — the exact log-probability of a slate, which off-policy
evaluation needs.

Policies that read the simulated shop's internals (the fitted click model, the shoppers'
histories) rather than the observation alone inherit :class:`EngineBoundPolicy`: whoever runs
them calls :meth:`EngineBoundPolicy.bind` with the engine first. Such a policy can only run in
the simulator (not on a real shop's traffic), which is why the protocol is explicit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from shopsim.envs.engine import ShopperBatch


@runtime_checkable
class SlatePolicy(Protocol):
    """What every shopsim policy implements."""

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Slates (…, k) of candidate indices for the observation(s)."""
        ...


def batched(observation: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """The observation with a leading batch axis, and whether one had to be added."""
    single = np.asarray(observation["cand_mask"]).ndim == 1
    if single:
        return {key: np.asarray(v)[None] for key, v in observation.items()}, True
    return {key: np.asarray(v) for key, v in observation.items()}, False


def top_k_slate(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """(B, k) indices of the k best valid candidates, best first (ties: lower index first)."""
    s = np.where(mask.astype(bool), scores, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    return order[:, :k]


def random_valid_slates(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(B, k) uniformly random ordered slates of distinct valid candidates (``mask`` (B, N))."""
    keys = rng.random(mask.shape) + (1 - mask) * 2.0
    return np.argsort(keys, axis=1)[:, :k]


class ScoringPolicy:
    """A deterministic policy that ranks candidates by a score function of the observation.

    Subclasses implement :meth:`scores` ((B, N) array; higher is better).
    """

    name = "scoring"
    kind = "heuristic"

    def __init__(self, slate_size: int) -> None:
        self.slate_size = slate_size

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        obs, single = batched(observation)
        slate = top_k_slate(self.scores(obs), obs["cand_mask"], self.slate_size)
        return (slate[0] if single else slate), state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(slate_size={self.slate_size})"


class EngineBound(ABC):
    """Declares that a policy reads the simulator engine it runs in (see the module docstring).

    Wrappers of other policies (the OPE logging policies) inherit it too and forward
    :meth:`bind` to what they wrap with :func:`bind_engine`.
    """

    @abstractmethod
    def bind(self, engine: ShopperBatch) -> None:
        """Attach the engine whose shoppers the next observations describe."""


def bind_engine(policy: object, engine: ShopperBatch) -> None:
    """Bind ``policy`` to ``engine`` if it declares :class:`EngineBound` (others ignore it)."""
    if isinstance(policy, EngineBound):
        policy.bind(engine)


class EngineBoundPolicy(ScoringPolicy, EngineBound):
    """A scoring policy that reads the simulator engine it is evaluated in.

    The evaluator (:func:`shopsim.evaluation.in_simulator.evaluate_policy_in_sim`) and the OPE
    logger call :meth:`bind` with the :class:`~shopsim.envs.engine.ShopperBatch` before the
    first :meth:`predict`; :attr:`engine` is then the batch whose shoppers the observations
    describe (same rows, same order).
    """

    def __init__(self, slate_size: int) -> None:
        super().__init__(slate_size)
        self.engine: ShopperBatch | None = None

    def bind(self, engine: ShopperBatch) -> None:
        """Attach the engine whose shoppers the next observations describe."""
        self.engine = engine

    def bound_engine(self) -> ShopperBatch:
        """The bound engine; a clear error when :meth:`bind` was not called."""
        if self.engine is None:
            raise RuntimeError(f"{self.name}: call bind(engine) with the simulator being evaluated")
        return self.engine
