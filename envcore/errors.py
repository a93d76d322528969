"""Bad input: every CLI command turns these into one line on stderr and exit code 2.

Defined in the lowest layer so that envcore, the verifier and the agents can say "unusable
input" without importing subgen; `subgen.errors` re-exports it.
"""


class BadInput(Exception):
    """Unusable input: a missing or corrupt file, an unknown name, an impossible setting."""
