"""Trainer package."""
