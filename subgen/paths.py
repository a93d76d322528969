"""Where subgen keeps its files by default: the shipped rule DB lives inside the package, so a
non-editable install finds it too."""
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_RULES = DATA / "rules.db"
