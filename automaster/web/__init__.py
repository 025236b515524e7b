"""The local web app (``automaster serve``): upload, before/after at equal loudness with
A/B playback, settings in plain words with controls, album view, report, downloads.

Every render runs the ``automaster`` command itself in a worker process (jobs.py); the
HTTP side is Starlette (app.py) behind a Host and token guard (security.py); the page
is plain HTML/JS/CSS served from static/ (no CDN, works offline). Needs the ``web``
extra: ``pip install 'automaster[web]'``.
"""
