"""A model list that can only be read: its create, edit and delete URLs answer 404."""

from __future__ import annotations

from flask import abort

from admin.base import SecureModelView

WRITE_VIEWS = frozenset({"create_view", "edit_view", "delete_view", "ajax_update"})


class ReadOnlyModelView(SecureModelView):
    """Lists and details only; no row can be created, edited or deleted from the admin."""

    can_create = False
    can_edit = False
    can_delete = False

    def _handle_view(self, name, **kwargs):
        refused = super()._handle_view(name, **kwargs)
        if refused is not None:
            return refused
        if name in WRITE_VIEWS:
            abort(404)
        return None

    def export_rows(self, columns: list[tuple[str, str]], value) -> object:
        """The list's rows under the current filters and sort, header first, streamed."""
        yield [label for _name, label in columns]
        for row in self.filtered_query().yield_per(1000):
            yield [value(row, name) for name, _label in columns]
