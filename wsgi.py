"""What gunicorn loads: one app per worker process, built after the fork."""

from stabilizer import create_app

app = create_app(background=True)
