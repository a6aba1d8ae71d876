"""shopsim: a reinforcement-learning playground built from a shop's own logged sessions.

Subpackages follow the pipeline, bottom to top (each imports only from those before it; see
docs/architecture.md): :mod:`shopsim.data` (the log layer), :mod:`shopsim.encoders` (item and
state encoders), :mod:`shopsim.envs` (the shopper model, its fitting and the runtime env),
:mod:`shopsim.agents` (slate policies, baselines, one registry), :mod:`shopsim.evaluation`
(statistics, in-simulator and next-item evaluation, OPE), :mod:`shopsim.experiments` (config,
runner, studies, reporting, CLI).
"""

from shopsim.errors import ShopsimError

__version__ = "0.1.0"
__all__ = ["ShopsimError", "__version__"]
