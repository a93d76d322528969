"""agents.rl."""
