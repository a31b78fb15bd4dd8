"""Rosters for the tests: the fixture folders, and generated OneRoster files of any size."""

from __future__ import annotations

import csv
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "roster"
USERS_HEADER = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
).split(",")
ORGS = (FIXTURES / "district" / "orgs.csv").read_text()


def user_row(**cells) -> list[str]:
    """A users.csv row: the named cells, the rest empty."""
    return [cells.get(column, "") for column in USERS_HEADER]


def write_users(folder: Path, rows: list[list[str]], orgs: str = ORGS) -> Path:
    """A roster folder with this users.csv (rows of cells) and the district's orgs.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orgs.csv").write_text(orgs)
    with (folder / "users.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(USERS_HEADER)
        writer.writerows(rows)
    return folder


def cell(n: int) -> str:
    return f"+1415{300 + n // 10000}{n % 10000:04d}"


def generated_rows(families: int) -> list[list[str]]:
    """`families` families of one student (Elementary) and two parents, each with a cell."""
    rows = []
    for f in range(families):
        student, mom, dad = f"gs-{f}", f"gm-{f}", f"gd-{f}"
        rows.append(
            user_row(
                sourcedId=student,
                role="student",
                orgSourcedIds="org-elem",
                givenName=f"Kid{f}",
                familyName=f"Fam{f}",
                identifier=f"S-{f}",
                sms=cell(3 * f),
                agentSourcedIds=f"{mom},{dad}",
                grades="04",
            )
        )
        for sid, n, first in ((mom, 3 * f + 1, "Mom"), (dad, 3 * f + 2, "Dad")):
            rows.append(
                user_row(
                    sourcedId=sid,
                    role="parent",
                    orgSourcedIds="org-district",
                    givenName=first,
                    familyName=f"Fam{f}",
                    email=f"{sid}@example.org",
                    sms=cell(n),
                    agentSourcedIds=student,
                )
            )
    return rows
