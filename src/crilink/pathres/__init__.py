"""pathres layer (see DESIGN.md)."""
