"""The domain: organizations, families, their addresses, consent state, its events, and the outbox."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash

from consent.extensions import db
from consent.passwords import hash_password


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (stored as naive UTC on both databases)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Channel(enum.StrEnum):
    TEXT = "text"
    VOICE = "voice"
    EMAIL = "email"


class Status(enum.StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"
    BOUNCED = "bounced"
    UNKNOWN = "unknown"  # a bounce cleared back to no choice


class Source(enum.StrEnum):
    ENROLLMENT = "enrollment"
    PORTAL = "portal"
    ADMIN = "admin"
    IMPORT = "import"
    SMS_KEYWORD = "sms_keyword"
    SMS_REPLY = "sms_reply"
    CARRIER = "carrier"
    EMAIL_LINK = "email_link"
    ONE_CLICK = "one_click"
    STAFF_ENTRY = "staff_entry"
    BOUNCE = "bounce"
    VOICE_KEYPRESS = "voice_keypress"  # the opt-out key pressed during a call
    API = "api"  # reported by another system through /api/v1/optouts
    COMPLAINT = "complaint"  # a spam complaint relayed by the mail provider


class Role(enum.StrEnum):
    PARENT = "parent"
    ORG = "org"  # organization communication team
    SITE = "site"  # site communication team
    STAFF = "staff"


class PhoneKind(enum.StrEnum):
    CELL = "cell"
    HOME = "home"
    WORK = "work"


class TxId(sa.types.TypeDecorator):
    """A transaction id: PostgreSQL's xid8 (read and written as an integer); BIGINT elsewhere."""

    impl = sa.BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(XID8())
        return dialect.type_descriptor(sa.BigInteger())

    def process_result_value(self, value, dialect):
        return None if value is None else int(value)


class XID8(sa.types.UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw):
        return "xid8"

    def bind_processor(self, dialect):
        return lambda value: None if value is None else str(value)


# Reflection (Alembic's comparison) reads the column back as this type.
from sqlalchemy.dialects.postgresql.base import ischema_names as _pg_types  # noqa: E402

_pg_types.setdefault("xid8", XID8)


def _enum(enum_cls: type[enum.Enum], name: str) -> sa.Enum:
    # Stored as short strings with a CHECK, so both databases read them alike.
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Organization(db.Model):
    """A district: its texting number, notification email, and its consent rules."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    texting_number: Mapped[str] = mapped_column(sa.String(20), unique=True)
    notification_email: Mapped[str] = mapped_column(sa.String(320))
    help_contact: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    texts_about: Mapped[str] = mapped_column(
        sa.String(300),
        default="school closures, attendance, emergencies and events",
        server_default="school closures, attendance, emergencies and events",
    )
    message_frequency: Mapped[str] = mapped_column(
        sa.String(100),
        default="up to 10 messages a month",
        server_default="up to 10 messages a month",
    )
    default_region: Mapped[str] = mapped_column(sa.String(2), default="US", server_default="US")
    # What carriers and mail providers expect to see: the texting terms and privacy policy the
    # texting disclosure links to, and the postal address in every email's footer (CAN-SPAM).
    terms_url: Mapped[str] = mapped_column(sa.String(500), default="", server_default="")
    privacy_url: Mapped[str] = mapped_column(sa.String(500), default="", server_default="")
    postal_address: Mapped[str] = mapped_column(sa.String(300), default="", server_default="")
    # The district's time zone: admin pages show times in it (UTC on hover and in exports).
    time_zone: Mapped[str] = mapped_column(
        sa.String(64), default="America/New_York", server_default="America/New_York"
    )
    # The rules of docs/rules.md ("Organization settings"), one column each, with their defaults.
    text_requires_consent: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    stop_blocks_voice: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    start_opts_in: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    admin_may_record_opt_out: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    staff_cell_starts_opted_in: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    revoke_all: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # The key a callee presses during a call to stop calls (seed 000, FCC 24-18).
    voice_optout_key: Mapped[str] = mapped_column(sa.String(1), default="9", server_default="9")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    sites: Mapped[list[Site]] = relationship(back_populates="organization", order_by="Site.name")

    RULES = {
        "text_requires_consent": "Text needs consent: an unknown text number is not eligible.",
        "stop_blocks_voice": "A STOP reply also blocks voice calls to that number.",
        "start_opts_in": "START, UNSTOP or YES replies opt the number back in to texts.",
        "admin_may_record_opt_out": "Admins may record an opt-out on someone's behalf, with a note.",
        "staff_cell_starts_opted_in": "A cell number entered by staff starts opted in (off: unknown).",
        "revoke_all": (
            "FCC revoke-all (in force 2027-01-31): a STOP or a plain request to stop, by text "
            "or about calls, stops both texts and calls to that number (non-emergency)."
        ),
    }

    def __repr__(self) -> str:
        return f"<Organization {self.name}>"


class Site(db.Model):
    """A school of an organization."""

    __tablename__ = "sites"
    __table_args__ = (sa.UniqueConstraint("organization_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # The school's ids in the district's roster (OneRoster orgs.csv), kept once matched.
    identifier: Mapped[str | None] = mapped_column(sa.String(64))
    sourced_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)

    organization: Mapped[Organization] = relationship(back_populates="sites")

    def __str__(self) -> str:
        return self.name


class Family(db.Model):
    """A household: its contacts (guardians) and students."""

    __tablename__ = "families"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    organization: Mapped[Organization] = relationship()
    contacts: Mapped[list[Contact]] = relationship(
        back_populates="family", order_by="Contact.position"
    )
    students: Mapped[list[Student]] = relationship(
        back_populates="family", order_by="Student.first_name"
    )

    def __str__(self) -> str:
        return self.name


class Person:
    """What contacts and students share: a name, phones and emails."""

    first_name: Mapped[str]
    last_name: Mapped[str]

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def __str__(self) -> str:
        return self.name


class Contact(Person, db.Model):
    """A guardian of a family (Parent 1-4); some have a portal login."""

    __tablename__ = "contacts"
    __table_args__ = (sa.Index("ix_contacts_last_first", "last_name", "first_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(sa.ForeignKey("families.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    # The roster's sourcedId (consent.roster); re-imports update the record that has it.
    sourced_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    # False: gone from the roster; kept as history, hidden from lists, cannot sign in.
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    first_name: Mapped[str] = mapped_column(sa.String(100))
    last_name: Mapped[str] = mapped_column(sa.String(100))
    relationship_to_student: Mapped[str] = mapped_column(sa.String(50), default="Guardian")
    position: Mapped[int] = mapped_column(default=1)  # Parent 1..4
    language: Mapped[str] = mapped_column(sa.String(8), default="en", server_default="en")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    family: Mapped[Family] = relationship(back_populates="contacts")
    phones: Mapped[list[Phone]] = relationship(back_populates="contact", order_by="Phone.id")
    emails: Mapped[list[EmailAddress]] = relationship(
        back_populates="contact", order_by="EmailAddress.id"
    )
    user: Mapped[User | None] = relationship(back_populates="contact")

    @property
    def primary_phone(self) -> Phone | None:
        return next(
            (p for p in self.phones if p.is_primary), self.phones[0] if self.phones else None
        )


class Student(Person, db.Model):
    """A student of a family, enrolled at a site."""

    __tablename__ = "students"
    __table_args__ = (sa.Index("ix_students_last_first", "last_name", "first_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(sa.ForeignKey("families.id"), index=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    sourced_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)  # the roster's
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    first_name: Mapped[str] = mapped_column(sa.String(100))
    last_name: Mapped[str] = mapped_column(sa.String(100))
    grade: Mapped[str] = mapped_column(sa.String(20), default="")
    enrollment_status: Mapped[str] = mapped_column(
        sa.String(20), default="enrolled", server_default="enrolled"
    )
    language: Mapped[str] = mapped_column(sa.String(8), default="en", server_default="en")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    family: Mapped[Family] = relationship(back_populates="students")
    site: Mapped[Site] = relationship()
    phones: Mapped[list[Phone]] = relationship(back_populates="student", order_by="Phone.id")
    emails: Mapped[list[EmailAddress]] = relationship(
        back_populates="student", order_by="EmailAddress.id"
    )


_ONE_OWNER = "(contact_id IS NULL) <> (student_id IS NULL)"


def _owner_indexes(table: str) -> tuple[sa.Index, ...]:
    """An address belongs to a contact or to a student, so each owner column is mostly NULL
    in one of the two tables (no student has an email in many districts). Full indexes then
    tell SQLite's planner, after ANALYZE, that a student id matches every row (they count
    the NULLs), and it scans the table instead (the account pages slow down with the table).
    Indexes of the non-NULL rows only hold what a lookup by owner can find."""
    return tuple(
        sa.Index(
            f"ix_{table}_{column}",
            column,
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )
        for column in ("contact_id", "student_id")
    )


class Phone(db.Model):
    """A phone number of a contact or a student, with its type."""

    __tablename__ = "phones"
    __table_args__ = (
        sa.CheckConstraint(_ONE_OWNER, name="one_owner"),
        *_owner_indexes("phones"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(sa.ForeignKey("contacts.id"))
    student_id: Mapped[int | None] = mapped_column(sa.ForeignKey("students.id"))
    number: Mapped[str] = mapped_column(sa.String(20), index=True)  # E.164
    kind: Mapped[PhoneKind] = mapped_column(_enum(PhoneKind, "phone_kind"))
    is_primary: Mapped[bool] = mapped_column(default=False)
    # When and how the number was proven to be its owner's (consent.verification). A row
    # from the district's records is verified as it is made; a number a parent types is not.
    verified_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    verified_by: Mapped[str | None] = mapped_column(sa.String(20), default="records")

    contact: Mapped[Contact | None] = relationship(back_populates="phones")
    student: Mapped[Student | None] = relationship(back_populates="phones")

    @property
    def owner(self) -> Contact | Student:
        return self.contact or self.student


class EmailAddress(db.Model):
    """An email address of a contact or a student."""

    __tablename__ = "email_addresses"
    __table_args__ = (
        sa.CheckConstraint(_ONE_OWNER, name="one_owner"),
        *_owner_indexes("email_addresses"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(sa.ForeignKey("contacts.id"))
    student_id: Mapped[int | None] = mapped_column(sa.ForeignKey("students.id"))
    address: Mapped[str] = mapped_column(sa.String(320), index=True)  # lower-case
    # As for phones: verified when it comes from the district's records, not when typed.
    verified_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    verified_by: Mapped[str | None] = mapped_column(sa.String(20), default="records")

    contact: Mapped[Contact | None] = relationship(back_populates="emails")
    student: Mapped[Student | None] = relationship(back_populates="emails")

    @property
    def owner(self) -> Contact | Student:
        return self.contact or self.student


class AddressVerification(db.Model):
    """One code or link sent to prove a phone or email of a record: the secret is kept only
    as an HMAC, bound to the row and the address it was sent to (consent.verification)."""

    __tablename__ = "address_verifications"
    __table_args__ = (
        sa.CheckConstraint("(phone_id IS NULL) <> (email_id IS NULL)", name="one_row"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"))
    phone_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("phones.id", ondelete="CASCADE"), index=True
    )
    email_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("email_addresses.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(sa.String(320))  # where it was sent from the row
    method: Mapped[str] = mapped_column(sa.String(12))  # "text", "call", "email", "email_link"
    sent_to: Mapped[str] = mapped_column(sa.String(320))
    secret_hash: Mapped[str] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    requested_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class MessagePurpose(db.Model):
    """What a message is about (Emergency, Attendance, General …): parents choose per purpose
    and channel (docs/purposes.md). `parents_may_turn_off_<channel>` False: always sent
    ("Always sent" on the portal); `reaches_opted_out`: may reach an address opted out of the
    channel, never one with a carrier block or a bounce."""

    __tablename__ = "message_purposes"
    __table_args__ = (sa.UniqueConstraint("organization_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"))
    key: Mapped[str] = mapped_column(sa.String(40))
    name_en: Mapped[str] = mapped_column(sa.String(100))
    name_es: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")
    position: Mapped[int] = mapped_column(default=0, server_default="0")
    parents_may_turn_off_text: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    parents_may_turn_off_voice: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    parents_may_turn_off_email: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    reaches_opted_out: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    is_general: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    def may_turn_off(self, channel: str) -> bool:
        return bool(getattr(self, f"parents_may_turn_off_{Channel(channel).value}"))

    def name(self, locale: str | None = None) -> str:
        return self.name_es if (locale or "").startswith("es") and self.name_es else self.name_en

    def __repr__(self) -> str:
        return f"<MessagePurpose {self.key}>"


class PurposeState(db.Model):
    """The choice of one (organization, channel, address) for one purpose: the fold of the
    events that name that purpose. The channel-wide state stays ConsentState (events with no
    purpose); every purpose reads it first. Written only by consent.ledger."""

    __tablename__ = "consent_purpose_states"
    __table_args__ = (
        sa.UniqueConstraint("organization_id", "channel", "address", "purpose_id"),
        # Eligibility for one purpose reads (address -> status) from the index alone.
        sa.Index(
            "ix_consent_purpose_states_eligibility",
            "organization_id",
            "purpose_id",
            "channel",
            "address",
            "status",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"))
    purpose_id: Mapped[int] = mapped_column(sa.ForeignKey("message_purposes.id"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    address: Mapped[str] = mapped_column(sa.String(320))
    status: Mapped[Status] = mapped_column(_enum(Status, "consent_status"))
    source: Mapped[Source] = mapped_column(_enum(Source, "consent_source"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[int] = mapped_column(default=0)
    last_event_id: Mapped[int | None] = mapped_column(sa.ForeignKey("consent_events.id"))

    purpose: Mapped[MessagePurpose] = relationship()


class ConsentState(db.Model):
    """The current consent of one (organization, channel, address): the fold of its events.

    Written only by consent.ledger.
    """

    __tablename__ = "consent_states"
    __table_args__ = (
        sa.UniqueConstraint("organization_id", "channel", "address"),
        # The opt-out list: one status and channel, in address order (keyset paging).
        sa.Index("ix_consent_states_list", "organization_id", "status", "channel", "sort_key"),
        sa.Index("ix_consent_states_digits", "organization_id", "digits"),
        sa.Index("ix_consent_states_changed", "organization_id", "status", "changed_at"),
        # Eligibility reads (address -> status) from the index alone: no table look-up per
        # address (PostgreSQL index-only scans; a covering index on SQLite).
        sa.Index(
            "ix_consent_states_eligibility", "organization_id", "channel", "address", "status"
        ),
        # PostgreSQL: part-of-an-email search (LIKE '%rivera%') through trigrams (pg_trgm);
        # emails only, so phone imports and STOP replies never touch this GIN index.
        sa.Index(
            "ix_consent_states_email_trgm",
            "address",
            postgresql_using="gin",
            postgresql_ops={"address": "gin_trgm_ops"},
            postgresql_where=sa.text("channel = 'email'"),
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    address: Mapped[str] = mapped_column(sa.String(320))
    # Phones sort by their digits, zero-padded; emails alphabetically.
    sort_key: Mapped[str] = mapped_column(sa.String(320))
    digits: Mapped[str | None] = mapped_column(sa.String(20))  # national digits, for search
    status: Mapped[Status] = mapped_column(_enum(Status, "consent_status"))
    carrier_block: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    source: Mapped[Source] = mapped_column(_enum(Source, "consent_source"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str] = mapped_column(sa.String(200))
    changed_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(default=0)
    last_event_id: Mapped[int | None] = mapped_column(sa.ForeignKey("consent_events.id"))

    organization: Mapped[Organization] = relationship()
    changed_by_user: Mapped[User | None] = relationship()

    @property
    def blocks_sending(self) -> bool:
        return self.status in (Status.OPTED_OUT, Status.BOUNCED)


@sa.event.listens_for(ConsentState.__table__, "after_create")
def _create_email_search(_table, connection, **_kw):
    from consent.database import create_email_search

    create_email_search(connection)  # SQLite: its trigram index of the emails (pg_trgm's part)


@sa.event.listens_for(ConsentState.__table__, "before_drop")
def _drop_email_search(_table, connection, **_kw):
    from consent.database import drop_email_search

    drop_email_search(connection)


class ConsentEvent(db.Model):
    """One change of consent, with its proof. Appended by consent.ledger; never updated or deleted."""

    __tablename__ = "consent_events"
    __table_args__ = (
        sa.Index("ix_consent_events_address", "organization_id", "address", "id"),
        sa.Index("ix_consent_events_org_id", "organization_id", "id"),
        sa.Index("ix_consent_events_occurred", "organization_id", "occurred_at"),
        sa.Index("ix_consent_events_feed", "organization_id", "txid", "id").ddl_if(
            dialect="postgresql"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    address: Mapped[str] = mapped_column(sa.String(320))
    # "change" moves the state; "request" records an attested opt-back-in request (no move).
    kind: Mapped[str] = mapped_column(sa.String(16), default="change", server_default="change")
    from_status: Mapped[Status | None] = mapped_column(_enum(Status, "from_status"))
    to_status: Mapped[Status | None] = mapped_column(_enum(Status, "to_status"))
    carrier_block: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    source: Mapped[Source] = mapped_column(_enum(Source, "consent_source"))
    actor: Mapped[str] = mapped_column(sa.String(200))  # "user:<id>", "recipient" or "system"
    actor_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    actor_label: Mapped[str] = mapped_column(sa.String(200), default="")
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(500))
    note: Mapped[str | None] = mapped_column(sa.Text)
    evidence: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    state_version: Mapped[int] = mapped_column(default=0)
    # PostgreSQL: the id of the transaction that wrote the event (xid8, set by the database),
    # so the change feed never reads past one still in flight (consent/feed.py). SQLite has
    # one writer at a time, so event ids commit in order and this stays NULL.
    txid: Mapped[int | None] = mapped_column(TxId(), server_default=sa.FetchedValue())
    # The purpose the change is about; None: the whole channel (every purpose reads it).
    purpose_id: Mapped[int | None] = mapped_column(sa.ForeignKey("message_purposes.id"), index=True)

    actor_user: Mapped[User | None] = relationship()
    purpose: Mapped[MessagePurpose | None] = relationship()


class OutboxMessage(db.Model):
    """An email or text we send, queued with the change that calls for it."""

    __tablename__ = "outbox_messages"
    __table_args__ = (sa.Index("ix_outbox_messages_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    channel: Mapped[str] = mapped_column(sa.String(8))  # "email", "text" or "voice" (a call)
    purpose: Mapped[str] = mapped_column(sa.String(40))
    to_address: Mapped[str] = mapped_column(sa.String(320), index=True)
    language: Mapped[str] = mapped_column(sa.String(8), default="en", server_default="en")
    subject: Mapped[str | None] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str | None] = mapped_column(sa.Text)
    headers: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    status: Mapped[str] = mapped_column(sa.String(12), default="queued", server_default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    provider_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    event_id: Mapped[int | None] = mapped_column(sa.ForeignKey("consent_events.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class InboundMessage(db.Model):
    """A text a recipient sent us, kept once per MessageSid with the reply we gave."""

    __tablename__ = "inbound_messages"
    # What we last said to a number (a clarifying question waiting for "Y"): its latest text.
    __table_args__ = (
        sa.Index("ix_inbound_messages_sender", "organization_id", "from_number", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(sa.ForeignKey("organizations.id"))
    message_sid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    from_number: Mapped[str] = mapped_column(sa.String(64))
    to_number: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[str] = mapped_column(sa.Text)
    intent: Mapped[str | None] = mapped_column(sa.String(16))
    reply: Mapped[str] = mapped_column(sa.Text, default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryReceipt(db.Model):
    """A delivery callback from the SMS provider, kept once per (MessageSid, status, error)."""

    __tablename__ = "delivery_receipts"
    __table_args__ = (sa.UniqueConstraint("message_sid", "message_status", "error_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_sid: Mapped[str] = mapped_column(sa.String(64))
    message_status: Mapped[str] = mapped_column(sa.String(32))
    error_code: Mapped[str] = mapped_column(sa.String(16), default="")
    to_number: Mapped[str] = mapped_column(sa.String(64), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportBatch(db.Model):
    """One upload of an opt-out file, with its counts (each row's event names the batch)."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(300))
    channels: Mapped[str] = mapped_column(sa.String(40))
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported: Mapped[int] = mapped_column(default=0)
    already: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    report: Mapped[dict] = mapped_column(sa.JSON, default=dict)


class User(UserMixin, db.Model):
    """A login: a parent (linked to a contact) or an admin (org team, site team, staff)."""

    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint("role <> 'parent' OR contact_id IS NOT NULL", name="parent_has_contact"),
        sa.CheckConstraint(
            "role NOT IN ('site', 'staff') OR site_id IS NOT NULL", name="site_role_has_site"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    contact_id: Mapped[int | None] = mapped_column(sa.ForeignKey("contacts.id"), unique=True)
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sites.id"))
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()
    # When the sign-in email was proven: set by whoever makes the account (staff, the CLI, the
    # demo, a claim link); None after self-enrollment until the link sent to it is opened.
    email_verified_at: Mapped[datetime | None] = mapped_column()
    # Part of the session's user id: moving it on (sign-out, a new password) ends every
    # session signed in before.
    auth_version: Mapped[int] = mapped_column(default=0, server_default="0")

    organization: Mapped[Organization] = relationship()
    contact: Mapped[Contact | None] = relationship(back_populates="user")
    site: Mapped[Site | None] = relationship()

    def set_password(self, password: str) -> None:
        self.password_hash = hash_password(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def get_id(self) -> str:
        """Flask-Login's session id: the user and the version of their sign-ins."""
        return f"{self.id}:{self.auth_version or 0}"

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.ORG, Role.SITE, Role.STAFF)

    @property
    def family_id(self) -> int | None:
        return self.contact.family_id if self.contact else None

    @property
    def label(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email

    def __str__(self) -> str:
        return self.label


class SignInFailure(db.Model):
    """Failed sign-ins in a row for one attempted email (known or not, so it tells nothing),
    kept by a digest of the email: the growing wait between attempts reads it."""

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


SCOPES = ("eligibility:read", "events:read", "optouts:write", "links:write")


class ApiKey(db.Model):
    """A key another system calls the API with: only its SHA-256 is kept; named, scoped,
    revocable (admin/integrations.py). Keys from API_KEYS in the environment are full-scope."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16))  # the first characters, to recognise it
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)  # sha256 hex
    scopes: Mapped[list] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()

    organization: Mapped[Organization] = relationship()
    created_by: Mapped[User | None] = relationship()

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


WEBHOOK_EVENT_TYPES = (
    "consent.opted_out",
    "consent.opted_in",
    "consent.bounced",
    "consent.cleared",
)


class WebhookEndpoint(db.Model):
    """A URL the organization's other systems receive consent changes at (Standard Webhooks)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    url: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    secret: Mapped[str] = mapped_column(sa.String(100))  # whsec_<base64>: needed to sign
    event_types: Mapped[list] = mapped_column(sa.JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    disabled_at: Mapped[datetime | None] = mapped_column()
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(300))
    failing_since: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    organization: Mapped[Organization] = relationship()

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(db.Model):
    """One consent event to send to one endpoint, queued in the transaction of the change."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("endpoint_id", "event_id"),
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("consent_events.id"), index=True)
    event_type: Mapped[str] = mapped_column(sa.String(40))
    status: Mapped[str] = mapped_column(sa.String(12), default="queued", server_default="queued")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()

    endpoint: Mapped[WebhookEndpoint] = relationship()


class WebhookAttempt(db.Model):
    """One try at a delivery: when, the answer's status (or the error), how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_deliveries.id"), index=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(sa.String(500))
    duration_ms: Mapped[int] = mapped_column(default=0)

    delivery: Mapped[WebhookDelivery] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()


class ImmutableEventError(RuntimeError):
    """Raised when code tries to update or delete a consent event."""


@sa.event.listens_for(ConsentEvent, "before_update")
def _refuse_event_update(mapper, connection, target):
    raise ImmutableEventError("consent events are never updated")


@sa.event.listens_for(ConsentEvent, "before_delete")
def _refuse_event_delete(mapper, connection, target):
    raise ImmutableEventError("consent events are never deleted")


@sa.event.listens_for(sa.orm.Session, "do_orm_execute")
def _refuse_bulk_event_changes(state):
    if (state.is_update or state.is_delete) and any(
        m.class_ is ConsentEvent for m in state.all_mappers
    ):
        raise ImmutableEventError("consent events are never updated or deleted")


class ImportMapping(db.Model):
    """How staff mapped the columns of an opt-out file, kept for the next file with the same
    headers (keyed by the digest of the normalized header tuple)."""

    __tablename__ = "import_mappings"
    __table_args__ = (
        sa.UniqueConstraint("organization_id", "headers_digest", name="uq_import_mappings_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    headers_digest: Mapped[str] = mapped_column(sa.String(64))
    headers: Mapped[list] = mapped_column(sa.JSON, default=list)
    roles: Mapped[list] = mapped_column(sa.JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobFile(db.Model):
    """A file a background job reads (an upload) or writes (an export), kept in the database
    so any worker on any machine can read it: this row is its header, its bytes are in
    JobFilePart rows (about 1 MiB each, consent.jobs), so neither the writer nor the reader
    holds the whole file."""

    __tablename__ = "job_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(300))
    size: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobFilePart(db.Model):
    """One part of a JobFile's bytes, in order of `seq` (0, 1, 2, ...)."""

    __tablename__ = "job_file_parts"

    job_file_id: Mapped[int] = mapped_column(
        sa.ForeignKey("job_files.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class Job(db.Model):
    """Long work done by a worker (consent.jobs): its kind, progress, lease and result."""

    __tablename__ = "jobs"
    __table_args__ = (sa.Index("ix_jobs_due", "status", "locked_until"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organizations.id"), index=True)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("job_files.id"))
    status: Mapped[str] = mapped_column(sa.String(12), default="queued", server_default="queued")
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    params: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    result: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text)
    worker: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    file: Mapped[JobFile | None] = relationship()
    created_by: Mapped[User | None] = relationship()


# PostgreSQL fills each event's txid with the id of the transaction that writes it, whatever
# writes it (the ORM, the bulk engine's statements).
sa.event.listen(
    ConsentEvent.__table__,
    "after_create",
    sa.DDL(
        "ALTER TABLE consent_events ALTER COLUMN txid SET DEFAULT pg_current_xact_id()"
    ).execute_if(dialect="postgresql"),
)


# Every new organization starts with these purposes (docs/purposes.md); its team edits them.
DEFAULT_PURPOSES = (
    # key, English, Spanish, may turn off (text, voice, email), reaches opted-out, general
    ("emergency", "Emergency", "Emergencias", (True, False, False), True, False),
    ("attendance", "Attendance", "Asistencia", (True, True, True), False, False),
    ("general", "General", "General", (True, True, True), False, True),
)


def default_purpose_rows(org_id: int) -> list[dict]:
    return [
        {
            "organization_id": org_id,
            "key": key,
            "name_en": en,
            "name_es": es,
            "position": position,
            "parents_may_turn_off_text": off[0],
            "parents_may_turn_off_voice": off[1],
            "parents_may_turn_off_email": off[2],
            "reaches_opted_out": reaches,
            "is_general": general,
        }
        for position, (key, en, es, off, reaches, general) in enumerate(DEFAULT_PURPOSES)
    ]


@sa.event.listens_for(Organization, "after_insert")
def _default_purposes(mapper, connection, org) -> None:
    """A new organization gets the default purposes in the same transaction."""
    connection.execute(MessagePurpose.__table__.insert(), default_purpose_rows(org.id))
