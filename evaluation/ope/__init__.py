"""Off-policy evaluation: logged feedback, estimators with intervals, validation against truth."""
