"""Built-in analysis commands."""
