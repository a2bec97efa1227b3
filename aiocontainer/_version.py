"""The package version, in its own module: nothing reads it back from a half-imported package."""

__version__ = "0.1.0"
