"""Bad input: every CLI command turns these into one line on stderr and exit code 2."""


class BadInput(Exception):
    """Unusable input: a missing or corrupt file, an unknown name, an impossible setting."""
