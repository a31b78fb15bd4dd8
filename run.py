"""Entry point for `flask --app run` and gunicorn (`gunicorn run:app`): every server and
worker process (gunicorn's workers, `flask jobs work`, `flask outbox send`) builds the app here,
then leaves what it built out of the garbage collector's scans (`freeze_startup_objects`)."""

from consent import create_app
from consent.app import freeze_startup_objects

app = create_app()
freeze_startup_objects()
