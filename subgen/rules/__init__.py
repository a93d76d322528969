"""subgen.rules."""
