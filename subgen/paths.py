"""Where subgen keeps its files by default."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
DEFAULT_RULES = DATA / "rules.db"
