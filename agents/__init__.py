"""Slate policies (PPO with a Plackett–Luce pointer head, SlateQ) and the baselines they face."""
