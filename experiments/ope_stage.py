"""The optional OPE stage of ``shopsim run`` (config section ``ope``).

Off-policy estimates of the run's policies, written as the ``ope`` block of results.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from shopsim.errors import ShopsimError


@dataclass
class OPEStageConfig:
    """Off-policy evaluation as a stage of the run (off by default)."""

    enabled: bool = False
    """Run the OPE stage and write the ``ope`` block of results.json."""
    source: str = "simulator"
    """``simulator``: log a randomised behaviour policy in the fitted simulator (truth known);
    ``log``: the logged propensities of the shop's own log (formats with propensities)."""

    def __post_init__(self) -> None:
        if self.source not in ("simulator", "log"):
            raise ShopsimError(f"source={self.source!r}: use simulator or log")
