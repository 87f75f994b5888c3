"""The same app with Flask's signed-cookie session: the baseline of the session benchmark."""

from flask.sessions import SecureCookieSessionInterface

from stabilizer import create_app

app = create_app()
app.session_interface = SecureCookieSessionInterface()
