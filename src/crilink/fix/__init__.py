"""fix layer (see DESIGN.md)."""
