"""formats layer (see DESIGN.md)."""
