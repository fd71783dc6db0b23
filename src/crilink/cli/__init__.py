"""Command-line interface: one module per command; parse, call the library, render."""
