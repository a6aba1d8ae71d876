"""The shopper environment: the fitted shopper model (:mod:`shopsim.envs.model`), its fitting
(:mod:`shopsim.envs.fitting`), the engine, the rewards, the Gymnasium env and the vector env.

Importing this package registers ``shopsim/Shopper-v0``::

    import gymnasium as gym
    import shopsim.envs
    env = gym.make("shopsim/Shopper-v0", simulator="runs/sim", slate_size=10, n_candidates=100)
"""

import gymnasium

if "shopsim/Shopper-v0" not in gymnasium.registry:
    gymnasium.register(id="shopsim/Shopper-v0", entry_point="shopsim.envs.env:ShopperEnv")
