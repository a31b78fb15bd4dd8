"""Keyset paging for admin lists: page 1,000 as fast as page 1.

Flask-Admin pages with OFFSET, which reads and throws away every row before the page; deep in
a list of a million rows that takes seconds. A view that mixes in `KeysetPaging` pages by
position instead: the next page is the rows after the last one shown, in the list's order
("WHERE (sort columns) > (its values) ORDER BY sort columns LIMIT n"), which the list's index
serves at any depth. The position travels in the query string (`after=`, `before=`, or
`last=1`), next to the search, filters, sort and page size, so the links work without
JavaScript and can be bookmarked.

A cursor only says where to start within the list the view's own query allows (the signed-in
organization, the filters): a forged one can skip rows, never show another's. One that cannot
be read, or that belongs to another sort, gives the first page, with a sentence that says so.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from datetime import datetime

import sqlalchemy as sa
from flask import flash, g, request, url_for

from consent.i18n import gettext as _

CURSOR_ARGS = ("after", "before", "last", "page")
_PAGE = "keyset_page"


class BadCursor(ValueError):
    """A cursor that cannot be read, or that belongs to another sort."""


def encode(signature: list, values: list) -> str:
    """The cursor of one row: its sort's signature and its values of the sort columns."""
    plain = [_plain(v) for v in values]
    text = json.dumps([signature, plain], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str, signature: list, columns: list) -> list:
    """The values of `columns` that `cursor` holds, typed as the columns are; BadCursor
    unless it was made for this `signature`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found_signature, values = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor(str(exc)) from exc
    if found_signature != signature or not isinstance(values, list):
        raise BadCursor("another sort")
    if len(values) != len(columns):
        raise BadCursor("another sort")
    return [_typed(value, column) for value, column in zip(values, columns, strict=True)]


def _plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _typed(value, column):
    kind = column.type
    enum_class = getattr(kind, "enum_class", None)
    try:
        if enum_class is not None:
            return enum_class(value)
        if isinstance(kind, sa.DateTime):
            if not isinstance(value, str):
                raise BadCursor("not a time")
            return datetime.fromisoformat(value)
        if isinstance(kind, sa.Integer):
            if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
                raise BadCursor("not an integer")
            return value
        if not isinstance(value, str) or len(value) > 1000:
            raise BadCursor("not a text")
        return value
    except ValueError as exc:
        raise BadCursor(str(exc)) from exc


class KeysetPaging:
    """Mix into a Flask-Admin SQLAlchemy ModelView (before it) to page its list by keyset.

    A view names, for each of its sorts, columns that order its rows uniquely, in
    `keyset_order`. The list page shows First, Previous, Next and Last links (the template
    includes admin/keyset_pager.html in its `list_pager` block); `page=` is not used.
    Exports (`execute=False` or no page size) get the plain query, every row.
    """

    def keyset_order(self, sort_column: str | None, sort_desc: bool) -> list[tuple]:
        """[(column, descending), ...]: the order of the list for this sort, unique."""
        raise NotImplementedError

    def _get_list_extra_args(self):
        # The links Flask-Admin builds (sort, page size) start again at the first page.
        view_args = super()._get_list_extra_args()
        for name in CURSOR_ARGS:
            view_args.extra_args.pop(name, None)
        return view_args

    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True, page_size=None):
        if not execute:
            return super().get_list(
                page, sort_column, sort_desc, search, filters, execute=False, page_size=page_size
            )
        size = page_size if page_size is not None else self.page_size
        if not size:
            return super().get_list(
                page, sort_column, sort_desc, search, filters, page_size=page_size
            )
        count, query = super().get_list(
            None, sort_column, sort_desc, search, filters, execute=False, page_size=0
        )
        order = self.keyset_order(sort_column, sort_desc)
        columns = [column for column, _desc in order]
        signature = [sort_column or "", bool(sort_desc)]
        where, backwards = self._position(signature, columns)
        if where is not None:
            descending = order[0][1]
            before = where[0] == "before"
            key, values = (
                sa.tuple_(*columns),
                sa.tuple_(
                    *[sa.literal(v, type_=c.type) for v, c in zip(where[1], columns, strict=True)]
                ),
            )
            # Forward in a descending list, or backward in an ascending one: smaller keys.
            query = query.filter(key < values if descending != before else key > values)
        query = query.order_by(None).order_by(
            *[(c.desc() if d != backwards else c.asc()) for c, d in order]
        )
        rows = query.limit(size + 1).all()
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            rows.reverse()
        mode = where[0] if where is not None else ("last" if backwards else "first")
        g.setdefault(_PAGE, {})[self.endpoint] = self._links(
            mode, more, rows, signature, columns, size
        )
        return count, rows

    def _position(self, signature: list, columns: list):
        """((“after” | “before”, values) or None, backwards) from the query string."""
        if request.args.get("last"):
            return None, True
        for name in ("after", "before"):
            cursor = request.args.get(name)
            if cursor:
                try:
                    return (name, decode(cursor, signature, columns)), name == "before"
                except BadCursor:
                    flash(_("That page link was not valid, so the first page is shown."), "info")
                    return None, False
        return None, False

    def _links(self, mode: str, more: bool, rows: list, signature: list, columns, size):
        """{"first", "previous", "next", "last"}: the URLs of the pages around this one (None
        where there is none)."""
        kept = {k: request.args.getlist(k) for k in request.args if k not in CURSOR_ARGS}

        def url(**position) -> str:
            return url_for(".index_view", **kept, **position)

        def cursor(row) -> str:
            return encode(signature, [getattr(row, c.key) for c in columns])

        has_previous = {"first": False, "after": True, "before": more, "last": more}[mode]
        has_next = {"first": more, "after": more, "before": True, "last": False}[mode]
        links = {"first": None, "previous": None, "next": None, "last": None}
        if mode != "first":
            links["first"] = url()
        if has_previous and rows:
            links["previous"] = url(before=cursor(rows[0]))
        elif has_previous:
            links["previous"] = url(last=1)
        if has_next and rows:
            links["next"] = url(after=cursor(rows[-1]))
        if mode != "last" and (has_next or not rows):
            links["last"] = url(last=1)
        return links

    def render(self, template, **kwargs):
        kwargs.setdefault("keyset_links", g.get(_PAGE, {}).get(self.endpoint))
        return super().render(template, **kwargs)
