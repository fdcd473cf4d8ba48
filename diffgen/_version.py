"""diffgen's version, in one place: the package, the CLI banner and the event-file headers (LHE, HepMC3) read it."""

__version__ = "0.1.0"
