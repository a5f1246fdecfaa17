"""Tile-level validation of the behavioural models against SPICE (`gcsim validate`).

* `tile`      the tile netlist generator (K array, readouts, charge-to-pulse converters, V array,
              V readouts; optional wire R and C per cell pitch);
* `spice`     runs a tile in ngspice, whole or split into independent column groups, and
              extracts the stages;
* `behaviour` runs the array simulator (`fitted` mode) on the same inputs;
* `compare`   stage-by-stage metrics, thresholds, JSON and PNG reports;
* `retention` SPICE hold-time simulation of the cells, for keys written at different ages.
"""
