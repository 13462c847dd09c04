"""``amp-image check-certs``: will an amphora's agent accept the controller's client
certificate? The operator's files (``files.py``), their X.509 lint (``lint.py``), a live
handshake as the agent makes it (``handshake.py``), the verdict (``check.py``), and the
agent's Python, given (``amp_image/image/python_version.py``) or read from an image
(``image_python.py``)."""
