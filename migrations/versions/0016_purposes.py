"""purposes: each organization's message purposes (Emergency, Attendance, General by default),
a purpose on every consent event (NULL: the whole channel, as every event so far) and the
per-purpose choices (consent_purpose_states). Existing states and events stay channel-wide.

Revision ID: 0016_purposes
Revises: 0014_import_mappings
Create Date: 2026-12-01 22:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016_purposes'
down_revision = '0014_import_mappings'
branch_labels = None
depends_on = None

DEFAULTS = (
    ('emergency', 'Emergency', 'Emergencias', (True, False, False), True, False),
    ('attendance', 'Attendance', 'Asistencia', (True, True, True), False, False),
    ('general', 'General', 'General', (True, True, True), False, True),
)


def _enum(name, values):
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade():
    purposes = op.create_table(
        'message_purposes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=40), nullable=False),
        sa.Column('name_en', sa.String(length=100), nullable=False),
        sa.Column('name_es', sa.String(length=100), server_default='', nullable=False),
        sa.Column('position', sa.Integer(), server_default='0', nullable=False),
        sa.Column('parents_may_turn_off_text', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('parents_may_turn_off_voice', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('parents_may_turn_off_email', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('reaches_opted_out', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('is_general', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('organization_id', 'key'),
    )
    # Not a batch on SQLite: rebuilding consent_events would drop a table that consent_states
    # references (foreign keys are on). SQLite adds a nullable REFERENCES column in place.
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            'ALTER TABLE consent_events ADD COLUMN purpose_id INTEGER '
            'REFERENCES message_purposes (id)'
        )
    else:
        op.add_column('consent_events', sa.Column('purpose_id', sa.Integer(), nullable=True))
        op.create_foreign_key(
            'fk_consent_events_purpose_id_message_purposes',
            'consent_events', 'message_purposes', ['purpose_id'], ['id'],
        )
    op.create_index('ix_consent_events_purpose_id', 'consent_events', ['purpose_id'], unique=False)
    op.create_table(
        'consent_purpose_states',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('purpose_id', sa.Integer(), nullable=False),
        sa.Column('channel', _enum('channel', ('text', 'voice', 'email')), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column(
            'status',
            _enum('consent_status', ('opted_in', 'opted_out', 'bounced', 'unknown')),
            nullable=False,
        ),
        sa.Column(
            'source',
            _enum(
                'consent_source',
                (
                    'enrollment', 'portal', 'admin', 'import', 'sms_keyword', 'sms_reply',
                    'carrier', 'email_link', 'one_click', 'staff_entry', 'bounce',
                ),
            ),
            nullable=False,
        ),
        sa.Column('changed_at', sa.DateTime(), nullable=False),
        sa.Column('changed_by', sa.String(length=200), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('last_event_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['last_event_id'], ['consent_events.id']),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id']),
        sa.ForeignKeyConstraint(['purpose_id'], ['message_purposes.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('organization_id', 'channel', 'address', 'purpose_id'),
    )
    op.create_index(
        'ix_consent_purpose_states_eligibility',
        'consent_purpose_states',
        ['organization_id', 'purpose_id', 'channel', 'address', 'status'],
        unique=False,
    )
    # The default purposes for every organization already on record.
    conn = op.get_bind()
    org_ids = [row[0] for row in conn.execute(sa.text('SELECT id FROM organizations'))]
    rows = [
        {
            'organization_id': org_id,
            'key': key,
            'name_en': en,
            'name_es': es,
            'position': position,
            'parents_may_turn_off_text': off[0],
            'parents_may_turn_off_voice': off[1],
            'parents_may_turn_off_email': off[2],
            'reaches_opted_out': reaches,
            'is_general': general,
        }
        for org_id in org_ids
        for position, (key, en, es, off, reaches, general) in enumerate(DEFAULTS)
    ]
    if rows:
        op.bulk_insert(purposes, rows)


def downgrade():
    op.drop_index('ix_consent_purpose_states_eligibility', table_name='consent_purpose_states')
    op.drop_table('consent_purpose_states')
    op.drop_index('ix_consent_events_purpose_id', table_name='consent_events')
    if op.get_bind().dialect.name == 'sqlite':
        # The unnamed REFERENCES goes with the column (a table rebuild on SQLite).
        with op.batch_alter_table('consent_events', schema=None) as batch_op:
            batch_op.drop_column('purpose_id')
    else:
        op.drop_constraint(
            'fk_consent_events_purpose_id_message_purposes', 'consent_events', type_='foreignkey'
        )
        op.drop_column('consent_events', 'purpose_id')
    op.drop_table('message_purposes')
