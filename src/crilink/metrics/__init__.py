"""metrics layer (see DESIGN.md)."""
