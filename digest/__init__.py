"""digest: newsletter digests from RSS/Atom feeds, composed once and mailed to every subscriber."""

__version__ = "0.1.0"
