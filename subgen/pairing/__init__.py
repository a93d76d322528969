"""subgen.pairing."""
