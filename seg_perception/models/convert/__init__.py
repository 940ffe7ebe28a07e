"""Converters from public checkpoint formats to this package's module layout.

One module per public format (the reference implementation it follows, its container layout,
and what the file's keys imply about the network). Each converter is verified against outputs of
the reference's own code (``../shared/refs`` fixtures or a locally run reference checkout).
"""
