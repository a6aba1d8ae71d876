"""Evaluation: held-out next-item results, in-simulator evaluation of slate policies, the
statistics every report uses, and the off-policy evaluation library (:mod:`.ope`)."""
