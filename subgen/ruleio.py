"""Loading rules from any of the three formats: a rule DB (.db), JSON (.json), TASO (.pb)."""
from __future__ import annotations

import json
from pathlib import Path

from envcore.rule import MalformedRule, Rule
from subgen.errors import BadInput


def load_rules(path) -> list[Rule]:
    """All rules of the file (every status for a .db); BadInput with one line otherwise."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no such rule file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".db":
        from subgen.ruledb import RuleDB
        with RuleDB(path, create=False) as db:
            return [s.rule for s in db.rules()]
    if suffix == ".pb":
        from subgen.taso_pb import read_rules
        return read_rules(path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadInput(f"{path} is not valid JSON ({str(e).splitlines()[0]})") from None
        if isinstance(data, dict) and isinstance(data.get("rules"), list):
            data = data["rules"]
        if not isinstance(data, list):
            raise BadInput(f"{path}: expected a list of rules or {{\"rules\": [...]}}")
        out = []
        for k, d in enumerate(data):
            try:
                if not isinstance(d, dict):
                    raise MalformedRule("not an object")
                out.append(Rule.from_dict(d))
            except (MalformedRule, ValueError, KeyError, TypeError) as e:
                raise BadInput(f"{path}: rule {k} is malformed ({str(e).splitlines()[0]})") \
                    from None
        return out
    raise BadInput(f"{path}: unknown rule file type {suffix or '(none)'} (.db, .json or .pb)")


def save_json(rules, path) -> None:
    Path(path).write_text(json.dumps({"rules": [r.to_dict() for r in rules]}, indent=1))
