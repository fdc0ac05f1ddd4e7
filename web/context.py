"""Where request handlers find the app's tracker."""

from __future__ import annotations

from flask import Flask, current_app

from progresscast import ProgressTracker


def get_tracker(app: Flask | None = None) -> ProgressTracker:
    """The app's tracker (``current_app`` when no app is given)."""
    return (app or current_app).extensions["progresscast"]
