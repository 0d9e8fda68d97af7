"""A stand-in host application (see README.md here)."""
