"""shopsim: a reinforcement-learning playground built from a shop's own logged sessions.

Subpackages follow the pipeline: :mod:`shopsim.envs` (log layer, shopper simulator),
:mod:`shopsim.encoders` (item and state encoders), :mod:`shopsim.agents` (slate policies and
baselines), :mod:`shopsim.experiments` (CLI, runner, evaluation, reporting).
"""

from shopsim.errors import ShopsimError

__version__ = "0.1.0"
__all__ = ["ShopsimError", "__version__"]
