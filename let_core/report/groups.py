"""The institute's groups: which users and projects belong to which group, from a small file.

TOML::

    [projects]          # a project's group wins over its user's
    vision = "Computer Vision"

    [users]
    alice = "Computer Vision"
    bob = "NLP"

CSV (a header ``kind,name,group``; ``kind`` is ``user`` or ``project``)::

    kind,name,group
    project,vision,Computer Vision
    user,bob,NLP

A run belongs to its project's group, else its user's, else to ``unassigned``.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from let_core.errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd

UNASSIGNED = "unassigned"
KINDS = ("project", "user")
_TABLES = {"projects": "project", "users": "user"}
_EXAMPLE = ('e.g. [projects] vision = "Computer Vision" and [users] bob = "NLP" (TOML), or a CSV '
            'with the header kind,name,group and rows such as user,bob,NLP')


@frozen
class GroupMap:
    """Group names by project and by user (a project's group wins)."""

    projects: Mapping[str, str] = field(factory=dict)
    users: Mapping[str, str] = field(factory=dict)
    source: str = ""

    def labels(self, project: pd.Series, user: pd.Series) -> pd.Series:
        """Each row's group, by its project and user columns (``unassigned`` where neither is mapped)."""
        by_project = project.map(dict(self.projects))
        by_user = user.map(dict(self.users))
        return by_project.fillna(by_user).fillna(UNASSIGNED).astype(object)


def load_groups(path: str | os.PathLike[str]) -> GroupMap:
    """The mapping in ``path`` (``.toml`` or ``.csv``); a clear error naming the file and the
    line or key for anything it cannot use, never a partial mapping."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigurationError(f"groups file {file} does not exist; write one ({_EXAMPLE})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the groups file {file}: {exc}") from exc
    suffix = file.suffix.lower()
    if suffix == ".toml":
        mapping = _from_toml(text, file)
    elif suffix == ".csv":
        mapping = _from_csv(text, file)
    else:
        raise ConfigurationError(f"groups file {file}: name it .toml or .csv so its format is known ({_EXAMPLE})")
    if not mapping["project"] and not mapping["user"]:
        raise ConfigurationError(f"groups file {file} maps no user and no project to a group ({_EXAMPLE})")
    return GroupMap(projects=mapping["project"], users=mapping["user"], source=str(file))


def _add(mapping: dict[str, dict[str, str]], kind: str, name: Any, group: Any, where: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"{where}: the {kind} name is empty")
    if not isinstance(group, str) or not group.strip():
        raise ConfigurationError(f"{where}: {kind} {name!r} needs a group name (text), got {group!r}")
    name, group = name.strip(), group.strip()
    previous = mapping[kind].get(name)
    if previous is not None and previous != group:
        raise ConfigurationError(f"{where}: {kind} {name!r} is in group {previous!r} already, "
                                 f"and now {group!r}; a {kind} belongs to one group")
    mapping[kind][name] = group


def _from_toml(text: str, file: Path) -> dict[str, dict[str, str]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"groups file {file} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_TABLES))
    if unknown:
        raise ConfigurationError(f"groups file {file}: unknown table(s) {', '.join(map(repr, unknown))}; "
                                 f"use [projects] and [users] ({_EXAMPLE})")
    mapping: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for table, kind in _TABLES.items():
        entries = data.get(table, {})
        if not isinstance(entries, dict):
            raise ConfigurationError(f"groups file {file}: {table} must be a table such as [{table}]")
        for name, group in entries.items():
            _add(mapping, kind, name, group, f"groups file {file}, [{table}]")
    return mapping


def _from_csv(text: str, file: Path) -> dict[str, dict[str, str]]:
    reader = csv.reader(io.StringIO(text))
    header = [cell.strip().lower() for cell in next(reader, [])]
    if header != ["kind", "name", "group"]:
        raise ConfigurationError(f"groups file {file}: the first line must be kind,name,group, got "
                                 f"{','.join(header) or 'nothing'} ({_EXAMPLE})")
    mapping: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        where = f"groups file {file}, line {number}"
        if len(cells) != 3:
            raise ConfigurationError(f"{where}: expected 3 cells (kind,name,group), got {len(cells)}")
        kind = cells[0].strip().lower()
        if kind not in KINDS:
            raise ConfigurationError(f"{where}: kind {cells[0]!r} is neither 'user' nor 'project'")
        _add(mapping, kind, cells[1], cells[2], where)
    return mapping
