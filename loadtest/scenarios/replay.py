"""replay: pupils catching up on recorded lessons (点播回看), nothing live.

Each viewer reads the catalog, then the lesson file in 256 KB ranges every 1-3 s, about the rate a
~1 Mbit/s lesson plays at; the run shows how many such viewers a server process feeds per core.
"""

from __future__ import annotations

from loadtest.learners import RecordedViewer


class Viewer(RecordedViewer):
    weight = 1
