"""Translation: does the master hold up where people play it?

- :mod:`automaster.translate.codec`: lossy encode/decode/measure and the ceiling loop
  (a lossy master's *decoded* true peak meets the ceiling).
- :mod:`automaster.translate.deliver`: the command line's writer for lossy outputs and
  ``--codec-safe``.
- :mod:`automaster.translate.systems`: simple documented models of playback systems
  (phone, laptop, earbuds, car, club, mono) with loudness, band levels and warnings.

Nothing here imports torch at import time.
"""
