"""The lookup tables shipped with the package (package data, found by name: see :mod:`spos_deploy.tables.files`)."""
