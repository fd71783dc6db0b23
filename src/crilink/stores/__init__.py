"""stores layer (see DESIGN.md)."""
