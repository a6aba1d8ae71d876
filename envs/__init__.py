"""The shopper environment and everything it is made of, starting with the log layer
(:mod:`shopsim.envs.data`)."""
