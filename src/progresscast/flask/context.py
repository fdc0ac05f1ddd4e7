"""Where request handlers find the app's extension and tracker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app

from progresscast import ProgressTracker

if TYPE_CHECKING:
    from .extension import AppProgress


def current_progress(app: Flask | None = None) -> AppProgress:
    """What progresscast holds for the app (``current_app`` when no app is
    given): its tracker, settings, namespace."""
    return (app or current_app).extensions["progresscast"]


def get_tracker(app: Flask | None = None) -> ProgressTracker:
    """The app's tracker (``current_app`` when no app is given)."""
    return current_progress(app).tracker
