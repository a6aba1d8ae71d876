"""shopsim's test-suite (run from a checkout: ``make test``)."""
