"""Token ids shared by both representations: the three specials come first, then each
representation's own block (``apps.music.events``: performance events; ``apps.music.chorales``:
the JSB grid)."""

from __future__ import annotations

PAD, START, END = 0, 1, 2  # padding (never a target), start of a piece, end of a piece
SPECIALS = 3  # the first id of a representation's own tokens
