"""envcore.gym."""
