"""Baselines: next-item scorers fitted on logs (:mod:`.next_item`) and slate rankers that play
in the simulator (:mod:`.slates`)."""
