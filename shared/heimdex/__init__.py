"""Heimdex: vector-native search for video archives."""

__version__ = "0.1.0"
