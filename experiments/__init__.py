"""Experiment scripts, the ``shopsim`` command line, evaluation and reporting."""
