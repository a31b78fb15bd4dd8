"""Helpers for tests that go through the account emails: open the link the mailbox got."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.conftest import csrf_token


def link_in_mail(mailbox, email: str, path: str) -> str:
    """The path of the last link to `path` in the email that arrived for `email`."""
    messages = mailbox.to(email)
    assert messages, f"no email for {email}"
    links = [link for m in messages for link in mailbox.links(m, path)]
    assert links, f"no {path} link in the email to {email}"
    return urlsplit(links[-1]).path


def verify_from_mailbox(client, mailbox, email: str):
    """Open the verification link sent to `email` and press its button."""
    path = link_in_mail(mailbox, email, "/account/verify/")
    return client.post(path, data={"csrf_token": csrf_token(client, path)})
