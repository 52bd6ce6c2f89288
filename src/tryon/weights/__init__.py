"""Model weights on disk: tiny random checkpoints, portable saving, hub reachability (heavy)."""
