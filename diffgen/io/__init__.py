"""Event files: exact ``.npz``, Parquet, Les Houches (LHE 3.0) and HepMC3, all written atomically."""

from diffgen.io.atomic import atomic_write, check_writable
from diffgen.io.dispatch import SUFFIXES, format_of, read_events, write_events
from diffgen.io.hepmc import read_hepmc, write_hepmc
from diffgen.io.lhe import read_lhe, read_lhe_init, write_lhe
from diffgen.io.npz import read_npz, write_npz
from diffgen.io.parquet import read_parquet, write_parquet
from diffgen.io.stream import EventWriter

__all__ = ["atomic_write", "check_writable", "write_events", "read_events", "SUFFIXES", "format_of",
           "write_npz", "read_npz", "write_parquet", "read_parquet", "write_lhe", "read_lhe", "read_lhe_init",
           "write_hepmc", "read_hepmc", "EventWriter"]
