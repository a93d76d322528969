"""Loading rules from any of the three formats: a rule DB (.db), JSON (.json), TASO (.pb)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from envcore.rewrite.rule import MalformedRule, Rule
from subgen.errors import BadInput

FORMATS = {".db": "db", ".json": "json", ".pb": "pb"}   # rule file suffix -> format


def rule_format(path) -> str | None:
    """The format a rule file's name says ("db", "json", "pb"; the suffix, in any case), or
    None for another suffix.  The one place that tells a rule DB from a rule file."""
    return FORMATS.get(Path(path).suffix.lower())


def is_rule_db(path) -> bool:
    """Whether `path` names a rule DB (`subgen.rules.db`) rather than a JSON or TASO file."""
    return rule_format(path) == "db"


def load_rules(path) -> list[Rule]:
    """All rules of the file (every status for a .db); BadInput with one line otherwise."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no such rule file: {path}")
    fmt = rule_format(path)
    if fmt == "db":
        from subgen.rules.db import RuleDB
        with RuleDB(path, create=False) as db:
            return [s.rule for s in db.rules()]
    if fmt == "pb":
        from subgen.rules.taso_pb import read_rules
        return read_rules(path)
    if fmt == "json":
        data = _json_entries(path)
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
    raise BadInput(f"{path}: unknown rule file type {path.suffix.lower() or '(none)'} "
                   "(.db, .json or .pb)")


def _json_entries(path: Path) -> list:
    """The entries of a JSON rule file (a list, or {"rules": [...]}); BadInput otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{path} is not valid JSON ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise BadInput(f"{path} is nested too deeply to be a rule file") from None
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        data = data["rules"]
    if not isinstance(data, list):
        raise BadInput(f"{path}: expected a list of rules or {{\"rules\": [...]}}")
    return data


def save_json(rules, path) -> None:
    from subgen.outputs import write_atomic
    text = json.dumps({"rules": [r.to_dict() for r in rules]}, indent=1)
    write_atomic(path, lambda tmp: tmp.write_text(text))


@dataclass(frozen=True)
class MalformedEntry:
    """One entry of a rule file that is not a usable rule (its sides cannot be typed, or cannot
    agree in shape), in place of the Rule: `load_rules_tolerant` keeps the file's other rules."""
    index: int          # position in the file
    name: str           # the entry's own name where it has one, else "rule-<index>"
    reason: str         # one line


def _one_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_rules_tolerant(path) -> list:
    """Every entry of a .json or .pb rule file, in file order: a `Rule`, or a `MalformedEntry`
    (with its reason) for one that cannot be built.  BadInput (one line) only when the file
    itself cannot be read: missing, not JSON / not TASO protobuf, not a list of rules, or of
    another type.  A .db goes through `load_rules` (its rows were built as rules when stored)."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no such rule file: {path}")
    fmt = rule_format(path)
    if fmt == "db":
        return load_rules(path)
    if fmt == "pb":
        from envcore.ops import ShapeError
        from subgen.rules.taso_pb import decode, to_rule
        try:
            data = path.read_bytes()
        except OSError as e:
            raise BadInput(f"cannot read {path}: {e.strerror}") from None
        try:
            recs = decode(data)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise BadInput(f"{path} is not a TASO rule file ({_one_line(e)})") from None
        out = []
        for k, rec in enumerate(recs):
            name = f"taso-{k}"
            try:
                out.append(to_rule(rec, name))
            except (ValueError, KeyError, TypeError, IndexError, ShapeError) as e:
                out.append(MalformedEntry(k, name, _one_line(e)))
        return out
    if fmt == "json":
        data = _json_entries(path)
        out = []
        for k, d in enumerate(data):
            name = d.get("name") if isinstance(d, dict) else None
            name = name if isinstance(name, str) and name else f"rule-{k}"
            try:
                if not isinstance(d, dict):
                    raise MalformedRule("not an object")
                out.append(Rule.from_dict(d))
            except Exception as e:     # noqa: BLE001 -- any failure to build is this entry's
                out.append(MalformedEntry(k, name, _one_line(e)))
        return out
    raise BadInput(f"{path}: unknown rule file type {path.suffix.lower() or '(none)'} "
                   "(.db, .json or .pb)")
