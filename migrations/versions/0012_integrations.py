"""integrations: API keys in the database, webhook endpoints, deliveries and attempts, the
voice opt-out key, each event's transaction id (PostgreSQL, for the change feed), and the
sources voice_keypress, api and complaint

Revision ID: 0012_integrations
Revises: 0013_revocation
Create Date: 2026-11-24 10:00:00

"""
from alembic import op
import sqlalchemy as sa

from consent.models import TxId


# revision identifiers, used by Alembic.
revision = '0012_integrations'
down_revision = '0013_revocation'
branch_labels = None
depends_on = None

OLD_SOURCES = (
    'enrollment', 'portal', 'admin', 'import', 'sms_keyword', 'sms_reply', 'carrier',
    'email_link', 'one_click', 'staff_entry', 'bounce',
)
NEW_SOURCES = OLD_SOURCES + ('voice_keypress', 'api', 'complaint')


def _source_type(values):
    return sa.Enum(
        *values, name='consent_source', native_enum=False, create_constraint=True, length=16
    )


def _set_sources(values, previous):
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for table in ('consent_events', 'consent_states'):
        if postgresql:
            name = f'ck_{table}_consent_source'
            op.drop_constraint(op.f(name), table, type_='check')
            listed = ', '.join(f"'{v}'" for v in values)
            op.create_check_constraint(op.f(name), table, f'source IN ({listed})')
        else:
            with op.batch_alter_table(table, recreate='always') as batch_op:
                batch_op.alter_column(
                    'source',
                    existing_type=_source_type(previous),
                    type_=_source_type(values),
                    existing_nullable=False,
                )


def upgrade():
    postgresql = op.get_bind().dialect.name == 'postgresql'
    with op.batch_alter_table('organizations') as batch_op:
        batch_op.add_column(
            sa.Column('voice_optout_key', sa.String(length=1), server_default='9', nullable=False)
        )
    with op.batch_alter_table('consent_events') as batch_op:
        batch_op.add_column(sa.Column('txid', TxId(), nullable=True))
    if postgresql:
        op.execute('ALTER TABLE consent_events ALTER COLUMN txid SET DEFAULT pg_current_xact_id()')
        op.create_index(
            'ix_consent_events_feed', 'consent_events', ['organization_id', 'txid', 'id']
        )
    _set_sources(NEW_SOURCES, OLD_SOURCES)

    op.create_table(
        'api_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('scopes', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by_user_id', sa.Integer(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_api_keys_created_by_user_id_users')),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_api_keys_organization_id_organizations')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash')),
    )
    op.create_index(op.f('ix_api_keys_organization_id'), 'api_keys', ['organization_id'])

    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=500), nullable=False),
        sa.Column('description', sa.String(length=200), server_default='', nullable=False),
        sa.Column('secret', sa.String(length=100), nullable=False),
        sa.Column('event_types', sa.JSON(), nullable=False),
        sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('disabled_at', sa.DateTime(), nullable=True),
        sa.Column('disabled_reason', sa.String(length=300), nullable=True),
        sa.Column('failing_since', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by_user_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_webhook_endpoints_created_by_user_id_users')),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_webhook_endpoints_organization_id_organizations')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    )
    op.create_index(op.f('ix_webhook_endpoints_organization_id'), 'webhook_endpoints', ['organization_id'])

    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('event_type', sa.String(length=40), nullable=False),
        sa.Column('status', sa.String(length=12), server_default='queued', nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('locked_until', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints')),
        sa.ForeignKeyConstraint(['event_id'], ['consent_events.id'], name=op.f('fk_webhook_deliveries_event_id_consent_events')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
        sa.UniqueConstraint('endpoint_id', 'event_id', name=op.f('uq_webhook_deliveries_endpoint_id_event_id')),
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['status', 'next_attempt_at'])
    op.create_index(op.f('ix_webhook_deliveries_event_id'), 'webhook_deliveries', ['event_id'])

    op.create_table(
        'webhook_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('attempted_at', sa.DateTime(), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('error', sa.String(length=500), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], name=op.f('fk_webhook_attempts_delivery_id_webhook_deliveries')),
        sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_attempts_endpoint_id_webhook_endpoints')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts')),
    )
    op.create_index(op.f('ix_webhook_attempts_delivery_id'), 'webhook_attempts', ['delivery_id'])
    op.create_index(op.f('ix_webhook_attempts_endpoint_id'), 'webhook_attempts', ['endpoint_id'])


def downgrade():
    postgresql = op.get_bind().dialect.name == 'postgresql'
    op.drop_table('webhook_attempts')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_endpoints')
    op.drop_table('api_keys')
    _set_sources(OLD_SOURCES, NEW_SOURCES)
    if postgresql:
        op.drop_index('ix_consent_events_feed', table_name='consent_events')
    with op.batch_alter_table('consent_events') as batch_op:
        batch_op.drop_column('txid')
    with op.batch_alter_table('organizations') as batch_op:
        batch_op.drop_column('voice_optout_key')
