"""Plain baselines measured in the same harness as the world model."""
