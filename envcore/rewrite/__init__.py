"""envcore.rewrite.apply."""
