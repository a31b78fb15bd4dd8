"""What machines use: the SMS webhooks, the eligibility API and its OpenAPI document."""

from flask import Flask


def register(app: Flask) -> None:
    from api import eligibility, feedback, integrations, sms, voice

    app.register_blueprint(sms.bp)
    app.register_blueprint(voice.bp)
    app.register_blueprint(eligibility.bp)
    app.register_blueprint(integrations.bp)
    app.register_blueprint(feedback.bp)
