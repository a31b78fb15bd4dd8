"""Benchmark: how well the SMS reader hears revocations, on the corpus in tests/fixtures.

    python -m bench.revocation [--verbose]

Each row of tests/fixtures/revocations.csv is a message from a public source (Twilio, AWS,
Braze, Spoke, the FCC's order, the issue) or an ordinary school reply, with the reading it
should get. A row counts as a revocation when it should read STOP (on any channel, any scope);
the reader "hears" a revocation when it reads STOP. Precision: of the messages read as STOP,
how many should be; recall: of the revocations, how many are read as STOP. A row passes when
its whole reading (intent, channels, scope, reassigned) is as expected. The budgets are the
issue's: recall at least 95%, and no ordinary reply read as a revocation (precision 100%).
No database, no app: the reader is pure.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from bench._report import Figure, table
from consent import keywords

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "revocations.csv"
CHANNELS = {"text": keywords.TEXT, "voice": keywords.VOICE, "email": keywords.EMAIL}


@dataclass(frozen=True)
class Row:
    body: str
    reading: str  # stop, start, help, unclear, none
    channels: tuple[str, ...]
    scope: str
    reassigned: bool
    source: str


def rows(path: Path = CORPUS) -> list[Row]:
    """The corpus, one Row per message."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            Row(
                body=row["body"],
                reading=row["reading"],
                channels=tuple(CHANNELS[c] for c in row["channels"].split("+") if c),
                scope=row["scope"] or "all",
                reassigned=row["reassigned"] == "yes",
                source=row["source"],
            )
            for row in csv.DictReader(handle)
        ]


def got(row: Row) -> tuple:
    """What the reader makes of the row, in the corpus's terms."""
    reading = keywords.read(row.body)
    intent = reading.intent or "none"
    if intent != keywords.STOP:
        return (intent, (), "all", False)
    return (intent, reading.channels, reading.scope, reading.reassigned)


def expected(row: Row) -> tuple:
    if row.reading != keywords.STOP:
        return (row.reading, (), "all", False)
    return (row.reading, row.channels, row.scope, row.reassigned)


@dataclass
class Score:
    rows: int
    revocations: int
    heard: int  # revocations read as STOP
    false_stops: int  # other rows read as STOP
    exact_rows: int  # rows whose whole reading is as expected
    misses: list[tuple[Row, tuple]]

    @property
    def recall(self) -> float:
        return self.heard / self.revocations if self.revocations else 1.0

    @property
    def precision(self) -> float:
        said = self.heard + self.false_stops
        return self.heard / said if said else 1.0


def score(corpus: list[Row]) -> Score:
    revocations = heard = false_stops = exact_rows = 0
    misses = []
    for row in corpus:
        reading = got(row)
        revocation = row.reading == keywords.STOP
        revocations += revocation
        if reading[0] == keywords.STOP:
            heard += revocation
            false_stops += not revocation
        if reading == expected(row):
            exact_rows += 1
        else:
            misses.append((row, reading))
    return Score(len(corpus), revocations, heard, false_stops, exact_rows, misses)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    result = score(rows())
    figures = [
        Figure("revocations heard (recall)", 100 * result.recall, "%", budget=95, at_least=True),
        Figure("read as STOP correctly (precision)", 100 * result.precision, "%", budget=100,
               at_least=True),
        Figure("rows read exactly as expected", 100 * result.exact_rows / result.rows, "%"),
    ]  # fmt: skip
    print(f"corpus: {result.rows} messages, {result.revocations} revocations ({CORPUS.name})")
    print(table(figures, "reader"))
    if "--verbose" in argv or result.misses:
        for row, reading in result.misses:
            print(f"  expected {expected(row)}, got {reading}: {row.body!r}")
    return 0 if all(f.verdict == "pass" for f in figures if f.budget is not None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
