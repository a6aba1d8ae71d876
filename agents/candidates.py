"""Candidate vectors for the SB3 policies, from either observation mode of the shopper env.

In the ``vectors`` mode the observation carries the candidates' vectors (``cand``); in the
``indices`` mode only their item codes (``cand_item``), and the policy gathers the vectors from
its own copy of the env's read-only item table (:attr:`ShopperVecEnv.item_vectors
<shopsim.envs.vec_env.ShopperVecEnv.item_vectors>`). The gather is exact, so a policy sees the
same numbers in both modes and trains to the same weights (tested).

The table is a non-trainable buffer of the policy: it is saved in the model zip with the
weights (a policy is bound to the catalog it was trained on) and restored with them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs

from shopsim.errors import ShopsimError


class CandidateVectors(BasePolicy):
    """A :class:`BasePolicy` over the shopper env's ``Dict`` observation that reads candidate
    vectors from ``cand`` or gathers them through ``cand_item`` (see the module docstring)."""

    item_table: torch.Tensor

    def _init_item_table(self, observation_space: spaces.Dict) -> None:
        """Register the item table: (I + 1, d) zeros in the ``indices`` mode (filled by
        :meth:`set_item_table`), an empty (0, d) buffer when the observation has ``cand``."""
        d = int(observation_space["user"].shape[0])  # type: ignore[index]
        self.indexed = "cand" not in observation_space.spaces
        rows = 0
        if self.indexed:
            item_space = observation_space["cand_item"]
            assert isinstance(item_space, spaces.Box)
            rows = int(np.max(item_space.high)) + 1
        self.register_buffer("item_table", torch.zeros(rows, d))

    def set_item_table(self, table: np.ndarray) -> None:
        """Copy the env's item table (``env.item_vectors``) into the policy (``indices`` mode).

        :raises ShopsimError: a table of another shape than the observation space implies
            (another catalog or encoder).
        """
        if not self.indexed:
            return
        t = torch.tensor(np.asarray(table, dtype=np.float32))  # a copy: the env's table is read-only
        if tuple(t.shape) != tuple(self.item_table.shape):
            raise ShopsimError(
                f"item table of shape {tuple(t.shape)}: this policy was built for "
                f"{tuple(self.item_table.shape)} (another catalog or encoder)"
            )
        self.item_table.copy_(t)

    def candidate_vectors(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, N, d) float candidate vectors of a batch of observations."""
        if "cand" in obs:
            return obs["cand"].float()
        return self.item_table[obs["cand_item"].long()]

    def obs_to_tensor(self, observation: Any) -> tuple[PyTorchObs, bool]:
        """SB3's conversion, after dropping keys this policy's observation space does not have:
        a policy trained in the ``indices`` mode also acts on ``vectors``-mode observations
        (shopsim's evaluator uses those for every policy)."""
        if isinstance(observation, dict) and isinstance(self.observation_space, spaces.Dict):
            keys = self.observation_space.spaces
            observation = {k: v for k, v in observation.items() if k in keys}
        return super().obs_to_tensor(observation)
