"""Entry point for `flask --app run` and gunicorn (`gunicorn run:app`)."""

from consent import create_app

app = create_app()
