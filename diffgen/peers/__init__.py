"""Peer generators used to validate and benchmark diffgen (optional extra ``diffgen[peers]``).

Only :mod:`diffgen.peers.pythia` exists so far. Importing this package never imports
the peer itself: each wrapper loads it lazily and raises an ``ImportError`` with the
install hint when it is missing.
"""

from diffgen.peers import pythia

__all__ = ["pythia"]
