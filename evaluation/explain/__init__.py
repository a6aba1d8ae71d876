"""Why an item is in a slate: additive attributions and the shop's own evidence (issue 18)."""
