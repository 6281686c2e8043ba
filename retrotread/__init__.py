"""retrotread: guided backward-walking workouts on FTMS treadmills."""

__version__ = "0.1.0"
