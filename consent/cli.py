"""The command line: `flask --app run demo | outbox send | users create-admin | optouts …`."""

from __future__ import annotations

import time

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup

from consent.extensions import db

outbox_cli = AppGroup("outbox", help="Deliver queued email and texts.")
users_cli = AppGroup("users", help="Manage admin users.")
optouts_cli = AppGroup("optouts", help="Import and export the opt-out list.")
roster_cli = AppGroup("roster", help="Load the district's people from its roster.")
webhooks_cli = AppGroup("webhooks", help="Deliver consent changes to webhook endpoints.")


def register(app: Flask) -> None:
    app.cli.add_command(demo_command)
    app.cli.add_command(outbox_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(optouts_cli)
    app.cli.add_command(roster_cli)
    from consent import jobs

    app.cli.add_command(jobs.jobs_cli)
    app.cli.add_command(webhooks_cli)


@click.command("demo")
def demo_command():
    """Load the demo organization, logins and families (idempotent)."""
    from consent.demo import load_demo

    created = load_demo()
    if created:
        click.echo("Demo data loaded.")
    else:
        click.echo("Demo data already present; nothing changed.")
    from consent.demo import LOGINS

    click.echo("Demo logins (email / password):")
    for email, password, what in LOGINS:
        click.echo(f"  {email:22} {password:22} {what}")


@outbox_cli.command("send")
@click.option("--loop", is_flag=True, help="Keep delivering until stopped.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between passes.")
@click.option("--batch", default=100, show_default=True, help="Messages claimed per pass.")
def outbox_send(loop: bool, interval: float, batch: int):
    """Deliver queued email and texts, retrying failures with backoff."""
    from consent import outbox
    from consent.jobs import asked_to_stop

    # Asked to stop (SIGTERM, Ctrl-C): the batch in hand is delivered and recorded, the pass's
    # line printed, and the worker ends; what is left stays queued for the next worker.
    with asked_to_stop() as stopping:
        _passes(lambda: _outbox_pass(outbox, batch, loop, stopping), loop, interval, stopping)


def _passes(one_pass, loop: bool, interval: float, stopping: list) -> None:
    """A delivery worker's loop: `one_pass()`, then (with `loop`) again every `interval`
    seconds; ends after the pass in hand once `stopping` holds a signal."""
    while True:
        one_pass()
        db.session.remove()
        if not loop or stopping:
            break
        time.sleep(interval)  # a signal meanwhile: the flag is seen when the sleep ends
        if stopping:
            break


def _outbox_pass(outbox, batch: int, loop: bool, stopping: list) -> None:
    """Batches of `batch` messages until none is due (or a signal came), and a line for the
    pass when it did something."""
    total = outbox.DeliveryReport()
    while True:
        report = outbox.deliver(limit=batch)
        total.sent += report.sent
        total.failed += report.failed
        total.suppressed += report.suppressed
        total.expired += report.expired
        total.errors += report.errors
        done = report.sent + report.failed + report.suppressed + report.expired
        if done < batch or stopping:
            break
    if total.sent or total.failed or total.suppressed or total.expired or not loop:
        expired = f", expired {total.expired}" if total.expired else ""
        click.echo(
            f"sent {total.sent}, failed {total.failed} (will retry), "
            f"suppressed {total.suppressed}{expired}"
        )
        for error in total.errors[:20]:
            click.echo(f"  {error}", err=True)


@webhooks_cli.command("send")
@click.option("--loop", is_flag=True, help="Keep delivering until stopped.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between passes.")
@click.option("--batch", default=200, show_default=True, help="Deliveries claimed per pass.")
def webhooks_send(loop: bool, interval: float, batch: int):
    """Deliver queued webhook deliveries, retrying failures with backoff."""
    from consent import webhooks
    from consent.jobs import asked_to_stop

    # As `flask outbox send`: asked to stop, the batch in hand is posted and each attempt
    # recorded, the pass's line printed, and the worker ends; the rest stays queued.
    with asked_to_stop() as stopping:
        _passes(lambda: _webhooks_pass(webhooks, batch, loop, stopping), loop, interval, stopping)


def _webhooks_pass(webhooks, batch: int, loop: bool, stopping: list) -> None:
    """Batches of `batch` deliveries until none is due (or a signal came), and a line for the
    pass when it did something."""
    delivered = failed = 0
    disabled: list[str] = []
    while True:
        report = webhooks.deliver(limit=batch)
        delivered += report.delivered
        failed += report.failed
        disabled += report.disabled
        if report.delivered + report.failed < batch or stopping:
            break
    if delivered or failed or not loop:
        click.echo(f"delivered {delivered}, failed {failed} (will retry)")
    for url in disabled:
        click.echo(f"  disabled after a day of failures: {url}", err=True)


@users_cli.command("create-admin")
@click.argument("email")
@click.option("--role", type=click.Choice(["org", "site", "staff"]), required=True)
@click.option("--site", "site_name", help="The site, for the site and staff roles.")
@click.option("--name", default="", help="The person's name.")
@click.password_option(help="Asked for when not given.")
def create_admin(email: str, role: str, site_name: str | None, name: str, password: str):
    """Create an admin user (or reset the password and role of an existing one)."""
    from consent.models import Organization, Role, Site, User, utcnow

    org = db.session.scalars(sa.select(Organization).order_by(Organization.id)).first()
    if org is None:
        raise click.ClickException("No organization yet: run `flask --app run demo` first.")
    site = None
    if role in ("site", "staff"):
        if not site_name:
            raise click.ClickException(f"The {role} role needs --site NAME.")
        site = db.session.scalars(
            sa.select(Site).where(Site.organization_id == org.id, Site.name == site_name)
        ).first()
        if site is None:
            names = ", ".join(s.name for s in org.sites)
            raise click.ClickException(f"No site named {site_name!r}. Sites: {names}")
    if len(password) < 10:
        raise click.ClickException("Use a password of at least 10 characters.")
    email = email.strip().lower()
    user = db.session.scalars(sa.select(User).where(User.email == email)).first()
    if user is not None and user.role == Role.PARENT:
        raise click.ClickException(f"{email} is a parent login; use another email.")
    if user is None:
        user = User(organization_id=org.id, email=email, email_verified_at=utcnow())
        db.session.add(user)
    user.name = name or user.name or ""
    user.role = Role(role)
    user.site_id = site.id if site else None
    user.set_password(password)
    db.session.commit()
    click.echo(f"Admin {email} ({role}{', ' + site.name if site else ''}) is ready.")


@optouts_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--channel",
    type=click.Choice(["text", "voice", "email", "all"]),
    default="all",
    show_default=True,
    help="Phones go to text and/or voice, emails to email; all = every channel that fits.",
)
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--note", default=None, help="A note kept with every opt-out.")
def optouts_import(file: str, channel: str, dry_run: bool, note: str | None):
    """Opt out every address of a CSV or XLSX file; prints a per-row report.

    Exits 1 when any row was rejected (or the file could not be read).
    """
    import os

    from consent import imports
    from consent.ledger import Actor

    org = _organization()
    words = imports.PREVIEW_WORDS if dry_run else imports.WORDS

    def show(result):
        reason = f": {result.reason}" if result.reason else ""
        address = f" ({result.address})" if result.address and result.address != result.raw else ""
        click.echo(
            f"row {result.row_number}: {result.raw}{address}: {words[result.outcome]}{reason}"
        )

    name = os.path.basename(file)
    try:
        with open(file, "rb") as stream:
            if dry_run:
                report = imports.preview_file(org, stream, name, channel, on_row=show)
            else:
                report = imports.import_file(
                    org,
                    stream,
                    name,
                    channel,
                    actor=Actor.system("command-line import"),
                    note=note,
                    on_row=show,
                )
    except imports.ImportFileError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "would be imported" if dry_run else "imported"
    click.echo(
        f"{report.imported} {verb}, {report.already} already opted out, {report.rejected} "
        f"rejected, {report.ignored} ignored (blank, title or header rows), "
        f"of {report.total} rows."
    )
    if report.stopped:
        click.echo(f"The import stopped part-way: {report.stopped}", err=True)
    if report.rejected or report.stopped:
        raise SystemExit(1)


@optouts_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
def optouts_export(file: str):
    """Write the opt-out list to FILE: XLSX when it ends in .xlsx, else CSV."""
    from consent import optout_list

    org = _organization()
    optout_list.write_file(file, optout_list.list_rows(optout_list.list_statement(org)))
    click.echo(f"Wrote the opt-out list to {file}.")


def _organization():
    from consent.models import Organization

    org = db.session.scalars(sa.select(Organization).order_by(Organization.id)).first()
    if org is None:
        raise click.ClickException("No organization yet: run `flask --app run demo` first.")
    return org


@roster_cli.command("import")
@click.argument("path", type=click.Path(exists=True))
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
def roster_import(path: str, dry_run: bool):
    """Import a OneRoster 1.1 CSV roster (a folder or a .zip with orgs.csv and users.csv).

    Prints a per-row report and the totals; exits 1 when any row was rejected."""
    from consent import ledger, roster

    org = _organization()
    words = roster.PREVIEW_WORDS if dry_run else roster.WORDS

    def show(result: roster.RowResult) -> None:
        reason = f": {result.reason}" if result.reason else ""
        who = " ".join(x for x in (result.name, f"({result.sourced_id})") if x != "()")
        click.echo(f"row {result.row}: {who}: {words[result.outcome]}{reason}")

    def commit(_done, _report):
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()

    try:
        report = roster.import_path(
            org,
            path,
            actor=ledger.Actor.system("command-line roster import"),
            dry_run=dry_run,
            on_row=show,
            on_chunk=commit,
            chunk=current_app.config.get("ROSTER_CHUNK", roster.CHUNK),
        )
    except roster.RosterFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())
    if report.rejected:
        raise SystemExit(1)
