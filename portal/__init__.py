"""What parents and recipients use: sign-in, enrollment, account pages, signed-link pages."""

from flask import Flask


def register(app: Flask) -> None:
    from portal import account, accounts, auth, enroll, links

    app.register_blueprint(auth.bp)
    app.register_blueprint(enroll.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(links.bp)
