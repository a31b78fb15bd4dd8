"""Command-line tools: users create-admin and outbox send."""

import sqlalchemy as sa

from consent.extensions import db
from consent.models import Role, User


def test_create_admin_asks_for_password_and_sets_role_and_site(demo, runner):
    """`flask users create-admin` makes a site admin with a hashed password."""
    result = runner.invoke(
        args=[
            "users",
            "create-admin",
            "Office@Example.org",
            "--role",
            "site",
            "--site",
            "Maple Valley High",
        ],
        input="long-enough-pass\nlong-enough-pass\n",
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalars(sa.select(User).where(User.email == "office@example.org")).one()
    assert user.role == Role.SITE and user.site.name == "Maple Valley High"
    assert user.check_password("long-enough-pass") and "long-enough-pass" not in user.password_hash


def test_create_admin_refuses_unknown_site_and_short_password(demo, runner):
    """Bad input is refused with a clear message and nothing is created."""
    unknown = runner.invoke(
        args=["users", "create-admin", "x@example.org", "--role", "staff", "--site", "Nowhere"],
        input="long-enough-pass\nlong-enough-pass\n",
    )
    assert unknown.exit_code != 0 and "No site named 'Nowhere'" in unknown.output
    short = runner.invoke(
        args=["users", "create-admin", "x@example.org", "--role", "org"], input="short\nshort\n"
    )
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    assert db.session.scalars(sa.select(User).where(User.email == "x@example.org")).first() is None


def test_outbox_send_delivers_queued_email_once(demo, runner, mailbox, app):
    """Email queued while SMTP was down is delivered by `flask outbox send`, once."""
    from consent import ledger
    from consent.ledger import Actor
    from consent.models import Channel, Source

    app.config["OUTBOX_DELIVER_AFTER_COMMIT"] = False  # as if the SMTP server had been down
    ledger.opt_out(
        demo.org,
        Channel.EMAIL,
        "luis.rivera@example.org",
        source=Source.ONE_CLICK,
        actor=Actor.recipient(),
    )
    db.session.commit()
    assert mailbox.messages == []
    first = runner.invoke(args=["outbox", "send"])
    assert "sent 2" in first.output  # the confirmation and the organization's notice
    second = runner.invoke(args=["outbox", "send"])
    assert "sent 0" in second.output
    assert len(mailbox.to("luis.rivera@example.org")) == 1
    assert len(mailbox.to("office@example.org")) == 1
