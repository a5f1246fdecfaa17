"""Installed copies of the repository's `netlists/`, `characterization/` and `fits/` folders.

A wheel ships them here as package data (pyproject.toml maps each to gcsim._data.NAME); in a
source checkout this package is empty and gcsim.core.resources reads the top-level folders.
"""
