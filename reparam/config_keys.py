"""What each configuration key means, for ``reparam train --help`` and ``--print-config``.

Read from the dataclasses of ``reparam.config`` (their fields, defaults and the comments that
end their lines), never kept as a copy; and a config written back as TOML that loads to itself.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import io
import math
import re
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config


@functools.cache
def _field_comments() -> dict[str, dict[str, str]]:
    """class name -> {field: the comment that ends its line} for the dataclasses of reparam/config.py."""
    try:
        source = Path(config.__file__).read_text(encoding="utf-8")
    except OSError:  # an install without sources: keys and defaults, no meanings
        return {}
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    comments = {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}
    return {
        node.name: {
            s.target.id: comments.get(s.end_lineno or s.lineno, "") for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
        }
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef)
    }


@dataclass(frozen=True)
class Key:
    """One configuration key: ``name`` as written in an override (``train.lr``), its default, its meaning."""

    name: str
    default: Any
    meaning: str


def keys() -> list[Key]:
    """Every configuration key, ``seed`` first, then each section's in the order of its dataclass
    (the component options that the open sections also take are not listed: they depend on the component)."""
    seed = next(f for f in dataclasses.fields(config.Config) if f.name == "seed")
    out = [Key("seed", seed.default, _field_comments().get("Config", {}).get("seed", ""))]
    for section, cls in config.SECTIONS.items():
        meanings = _field_comments().get(cls.__name__, {})
        for f in dataclasses.fields(cls):
            if f.name != "options":
                default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                out.append(Key(f"{section}.{f.name}", default, meanings.get(f.name, "")))
    return out


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (what a config file holds and a key=value override parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = value.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04X}", text) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def to_toml(raw: dict[str, Any]) -> str:
    """A config as ``Config.to_dict()`` gives it, as a TOML file that ``config.load`` reads back to the
    same config; each key that has a meaning carries it as a comment."""
    meanings = {k.name: k.meaning for k in keys()}

    def line(name: str, key: str, value: Any) -> str:
        note = meanings.get(name, "")
        return f"{_toml_key(key)} = {toml_value(value)}" + (f"  # {note}" if note else "")

    lines = [line(k, k, v) for k, v in raw.items() if not isinstance(v, dict)]
    for section, values in raw.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"] + [line(f"{section}.{k}", k, v) for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _override_form(value: Any) -> str:
    """A default as one would type it after ``key=`` (a plain word unquoted, lists without spaces)."""
    if isinstance(value, str) and value and config.parse_value(value) == value and re.fullmatch(r"[\w.:/%+-]+", value):
        return value
    if isinstance(value, list):
        return "[" + ",".join(toml_value(v) for v in value) + "]"
    return toml_value(value)


def keys_help(width: int = 100) -> str:
    """Every key as ``section.key=default`` and its meaning, one section after another, wrapped to ``width``."""
    entries = [(f"{k.name}={_override_form(k.default)}", k.meaning, k.name.partition(".")[0]) for k in keys()]
    column = min(max(len(e[0]) for e in entries), 34, max(width // 3 - 4, 20)) + 4
    text_width = max(width - column, 30)
    lines, section = textwrap.wrap("configuration keys (key=value overrides, or [section] tables of CONFIG.toml), with their defaults:", width), ""
    for entry, meaning, name in entries:
        if name != section and section:
            lines.append("")
        section = name
        wrapped = textwrap.wrap(meaning, text_width) or [""]
        if len(entry) + 2 > column - 2:  # too long to share a line with its meaning
            lines.append(f"  {entry}")
            wrapped = [m for m in wrapped if m]
        else:
            lines.append(f"  {entry:<{column - 2}}{wrapped.pop(0)}".rstrip())
        lines += [" " * column + m for m in wrapped]
    open_sections = ", ".join(config.OPEN_SECTIONS)
    lines += ["", textwrap.fill(f"The {open_sections} sections also take their component's own keys (for example "
                                "likelihood.scale=0.1 for likelihood.name=gaussian, objective.alpha=0.5 for objective.name=renyi); "
                                "an unknown key is refused with the list of valid ones.", width)]  # fmt: skip
    return "\n".join(lines)
