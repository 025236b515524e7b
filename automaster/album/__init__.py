"""Album mastering: a set of songs prepared as one release (``automaster album``).

One module per step, in the order the audio goes through them:

- :mod:`~automaster.album.playlist`: the track list and per-track options (text or JSON);
- :mod:`~automaster.album.sequence`: per-track energy, loudness, tempo and key; the order;
- :mod:`~automaster.album.levels`: the loudness each track is mastered to (album or track);
- :mod:`~automaster.album.master`: load, predict settings (+ cohesion), master each track
  with :func:`automaster.pipeline.master_source`, assemble, verify;
- :mod:`~automaster.album.assemble`: fades, cross-fades, the timeline on CD frames, the
  true-peak check of cross-fades and cuts;
- :mod:`~automaster.album.cue`, :mod:`~automaster.album.report`: CUE sheet and report;
- :mod:`~automaster.album.output`: the files, written to a temporary folder and moved in;
- :mod:`~automaster.album.ddp`: with ``--ddp``, the DDP 2.00 image for CD replication,
  read back and verified;
- :mod:`~automaster.album.cli`: the command.
"""

from __future__ import annotations
