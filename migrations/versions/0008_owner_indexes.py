"""owner indexes of phones and emails hold only non-NULL owners (partial indexes), so
SQLite's planner, after ANALYZE, searches them instead of scanning the table

Revision ID: 0008_owner_indexes
Revises: 0007_perf
Create Date: 2026-11-23 02:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_owner_indexes'
down_revision = '0007_perf'
branch_labels = None
depends_on = None

INDEXES = [
    (table, column)
    for table in ('phones', 'email_addresses')
    for column in ('contact_id', 'student_id')
]


def upgrade():
    for table, column in INDEXES:
        name = f'ix_{table}_{column}'
        where = sa.text(f'{column} IS NOT NULL')
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column], sqlite_where=where, postgresql_where=where)


def downgrade():
    for table, column in INDEXES:
        name = f'ix_{table}_{column}'
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column], unique=False)
