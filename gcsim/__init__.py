"""gcsim: SPICE-driven characterisation of gain-cell in-memory-computing attention.

Sweeps netlists through ngspice, fits compact models, simulates attention heads on them,
and validates the behavioural models against SPICE.
"""

__version__ = "0.1.0"
