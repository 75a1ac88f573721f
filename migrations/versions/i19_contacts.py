"""contacts and organizations as records: identities' verification, search terms, contact
history, merges, organization domains, follow-up cases

The search terms of existing contacts (their names and identity addresses) and the
organizations' single ``domain`` are carried over.

Revision ID: i19_contacts
Revises: i21_user_locale
Create Date: 2026-12-07 02:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i19_contacts'
down_revision = 'i21_user_locale'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('organizations', sa.Column('tax_id', sa.String(length=50), nullable=True))
    op.add_column('organizations', sa.Column('notes', sa.Text(), nullable=True))
    _add_reference('organizations', 'merged_into_id')
    op.create_index('ix_organizations_name', 'organizations', ['name'], unique=False)
    op.create_table(
        'organization_domains',
        sa.Column('domain', sa.String(length=253), nullable=False),
        sa.Column('organization_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                                name=op.f('fk_organization_domains_organization_id_organizations'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('domain', name=op.f('pk_organization_domains')),
    )
    op.create_index(op.f('ix_organization_domains_organization_id'), 'organization_domains', ['organization_id'])
    op.execute("INSERT INTO organization_domains (domain, organization_id) "
               "SELECT lower(domain), id FROM organizations WHERE domain IS NOT NULL")

    op.add_column('contacts', sa.Column('notes', sa.Text(), nullable=True))
    op.add_column('contacts', sa.Column('attributes', sa.JSON(), nullable=True))
    _add_reference('contacts', 'merged_into_id')
    op.add_column('contacts', sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_contacts_email', 'contacts', ['email'], unique=False)
    op.create_index('ix_contacts_phone', 'contacts', ['phone'], unique=False)
    op.create_index('ix_contacts_organization_id_name', 'contacts', ['organization_id', 'name'], unique=False)

    op.add_column('contact_identities',
                  sa.Column('verified', sa.Boolean(), server_default=sa.true(), nullable=False))

    _add_reference('cases', 'follow_up_of')
    op.create_index(op.f('ix_cases_follow_up_of'), 'cases', ['follow_up_of'], unique=False)

    op.create_table(
        'contact_terms',
        sa.Column('term', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'),
                  nullable=False),
        sa.Column('contact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_contact_terms_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('term', 'contact_id', name=op.f('pk_contact_terms')),
    )
    op.create_index(op.f('ix_contact_terms_contact_id'), 'contact_terms', ['contact_id'])
    op.create_table(
        'contact_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('contact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=160), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_contact_events_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_events')),
    )
    op.create_index(op.f('ix_contact_events_contact_id'), 'contact_events', ['contact_id'])
    _backfill_terms()


def _add_reference(table: str, column: str) -> None:
    """A nullable id of another row, without a foreign key: SQLite adds a column with one
    only by copying the table, and dropping the original ``contacts`` or ``cases`` is
    refused while other tables point at them."""
    op.add_column(table, sa.Column(column, sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))


def _backfill_terms() -> None:
    """Search terms for the contacts that exist, in batches (a big table must not be
    read into memory at once)."""
    from posventa.core.contacts.normalize import terms_for

    bind = op.get_bind()
    terms = sa.table('contact_terms', sa.column('term'), sa.column('contact_id'))
    last = 0
    while True:
        rows = bind.execute(sa.text("SELECT id, name FROM contacts WHERE id > :last ORDER BY id LIMIT 5000"),
                            {"last": last}).all()
        if not rows:
            return
        last = rows[-1][0]
        ids = [r[0] for r in rows]
        identities: dict[int, list[tuple[str, str]]] = {}
        for cid, channel, address in bind.execute(
                sa.text("SELECT contact_id, channel, address FROM contact_identities "
                        "WHERE contact_id >= :lo AND contact_id <= :hi"), {"lo": ids[0], "hi": ids[-1]}):
            identities.setdefault(cid, []).append((channel, address))
        values = [{"term": t, "contact_id": cid} for cid, name in rows
                  for t in terms_for(name, identities.get(cid, ()))]
        if values:
            bind.execute(terms.insert(), values)


def downgrade() -> None:
    op.drop_index(op.f('ix_contact_events_contact_id'), table_name='contact_events')
    op.drop_table('contact_events')
    op.drop_index(op.f('ix_contact_terms_contact_id'), table_name='contact_terms')
    op.drop_table('contact_terms')
    with op.batch_alter_table('cases') as batch:
        batch.drop_index(op.f('ix_cases_follow_up_of'))
        batch.drop_column('follow_up_of')
    with op.batch_alter_table('contact_identities') as batch:
        batch.drop_column('verified')
    with op.batch_alter_table('contacts') as batch:
        batch.drop_index('ix_contacts_organization_id_name')
        batch.drop_index('ix_contacts_phone')
        batch.drop_index('ix_contacts_email')
        batch.drop_column('erased_at')
        batch.drop_column('merged_into_id')
        batch.drop_column('attributes')
        batch.drop_column('notes')
    op.drop_index(op.f('ix_organization_domains_organization_id'), table_name='organization_domains')
    op.drop_table('organization_domains')
    with op.batch_alter_table('organizations') as batch:
        batch.drop_index('ix_organizations_name')
        batch.drop_column('merged_into_id')
        batch.drop_column('notes')
        batch.drop_column('tax_id')
