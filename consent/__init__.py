"""Consent Desk: the consent core (app factory, models, ledger, eligibility, outbox)."""


def __getattr__(name):
    # Lazy, so pure modules (addresses, keywords) import without building Flask.
    if name == "create_app":
        from consent.app import create_app

        return create_app
    raise AttributeError(name)
