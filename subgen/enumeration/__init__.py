"""subgen.enumeration."""
