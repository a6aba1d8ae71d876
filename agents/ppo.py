"""PPO for slates: SB3's ``PPO`` with a pointer policy and a Plackett–Luce slate distribution.

The policy scores every candidate against the shopper state with one shared MLP (permutation
equivariant: candidate *i*'s score depends on candidate *i* and the state, never on its index),
masks invalid candidates with a large finite negative, and draws the slate by Gumbel-top-k:
no duplicates, exact log-probability (:mod:`shopsim.agents.distributions`). The value head
pools the candidates' hidden vectors (masked mean) with the state.

Why not a stock ``MultiDiscrete`` head: it samples slots independently (duplicates), and "index
3" names a different item at every step (ANCHORS.md, SB3 pitfalls 1–2).

SB3 details handled here: actions come back from the rollout buffer as float32 (cast to long);
Plackett–Luce has no closed-form entropy, so ``evaluate_actions`` returns the chain-rule
estimate along the taken slate; the constructor's arguments are returned by
``_get_constructor_parameters`` so ``PPO.load`` rebuilds the policy without ``custom_objects``.
SB3 annotates ``PPO``'s policy argument as an ``ActorCriticPolicy`` subclass; this class
implements the same interface PPO calls (``forward``, ``evaluate_actions``,
``predict_values``), so type checkers need ``# type: ignore[arg-type]`` at ``PPO(...)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from shopsim.agents.candidates import CandidateVectors
from shopsim.agents.distributions import gumbel_top_k, pl_entropy_estimate, pl_log_prob, top_k


class SlatePointerPolicy(CandidateVectors):
    """Pointer actor-critic over the shopper env's ``Dict`` observations (``user``, the
    candidates' vectors — ``cand``, or gathered through ``cand_item`` in the ``indices`` mode
    (:mod:`shopsim.agents.candidates`) —, ``cand_feat``, ``cand_mask``).

    :param hidden: width of the candidate and value MLPs.
    :param entropy_estimate: return the chain-rule entropy estimate (else None: SB3 then uses
        −log-prob of the taken slate).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.MultiDiscrete,
        lr_schedule: Schedule,
        hidden: int = 64,
        entropy_estimate: bool = True,
        use_sde: bool = False,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )
        d = int(observation_space["user"].shape[0])  # type: ignore[index]
        f = int(observation_space["cand_feat"].shape[1])  # type: ignore[index]
        self.slate_size = len(action_space.nvec)
        self.hidden = hidden
        self.entropy_estimate = entropy_estimate
        self._init_item_table(observation_space)
        self.cand_net = nn.Sequential(
            nn.Linear(3 * d + f, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        self.score_head = nn.Linear(hidden, 1)
        self.value_net = nn.Sequential(nn.Linear(hidden + d, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score_head.weight)  # start from a uniform slate distribution
        nn.init.zeros_(self.score_head.bias)
        # SB3's own policies build their optimizer the same way
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(hidden=self.hidden, entropy_estimate=self.entropy_estimate)
        return data

    # --- network ---------------------------------------------------------------------------
    def _encode(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert isinstance(obs, dict)
        user = obs["user"].float()
        cand = self.candidate_vectors(obs)
        feat = obs["cand_feat"].float()
        mask = obs["cand_mask"] > 0.5
        u = user[:, None, :].expand_as(cand)
        h = self.cand_net(torch.cat([cand, feat, u, cand * u], dim=-1))
        scores = self.score_head(h).squeeze(-1)
        m = mask.float().unsqueeze(-1)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        values = self.value_net(torch.cat([pooled, user], dim=-1))
        return scores, mask, values

    def forward(
        self, obs: PyTorchObs, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores, mask, values = self._encode(obs)
        k = self.slate_size
        slate = top_k(scores, mask, k) if deterministic else gumbel_top_k(scores, mask, k)
        return slate, values, pl_log_prob(scores, slate, mask)

    def evaluate_actions(
        self, obs: PyTorchObs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        scores, mask, values = self._encode(obs)
        slate = actions.long()  # the rollout buffer stores actions as float32
        log_prob = pl_log_prob(scores, slate, mask)
        entropy = pl_entropy_estimate(scores, slate, mask) if self.entropy_estimate else None
        return values, log_prob, entropy

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        return self._encode(obs)[2]

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        scores, mask, _ = self._encode(observation)
        k = self.slate_size
        return top_k(scores, mask, k) if deterministic else gumbel_top_k(scores, mask, k)

    @torch.no_grad()
    def slate_log_prob(self, observation: dict[str, np.ndarray], slate: np.ndarray) -> np.ndarray:
        """Exact log-probability of ``slate`` under the stochastic policy (for OPE)."""
        obs, _ = self.obs_to_tensor(observation)
        scores, mask, _ = self._encode(obs)
        s = torch.as_tensor(np.asarray(slate).reshape(scores.shape[0], -1))
        return pl_log_prob(scores, s, mask).numpy()
