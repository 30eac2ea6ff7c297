"""The one place fastrec's version is written."""

__version__ = "0.1.0"
