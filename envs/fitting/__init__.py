"""Fitting the shopper: ``fit_simulator`` turns a prepared log and an encoder run into a
calibrated simulator with its fidelity report. It sits above the engine because calibration and
the fidelity replay run the fitted shopper through :class:`~shopsim.envs.engine.ShopperBatch`."""
