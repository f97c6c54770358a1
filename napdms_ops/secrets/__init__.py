"""Secrets of a stack as the operator sees them: their ages and due dates (`inventory`), and
rotation that keeps every holder working (`rotate`), never a value."""
