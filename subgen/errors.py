"""Bad input: every CLI command turns these into one line on stderr and exit code 2.

The class lives in envcore (the lowest layer, so agents can raise it too); this is its name in
subgen."""
from envcore.errors import BadInput

__all__ = ["BadInput"]
