"""Where request handlers find the app's extension and tracker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app

from progresscast import ProgressTracker

if TYPE_CHECKING:
    from .extension import ProgressCast


def current_progress(app: Flask | None = None) -> ProgressCast:
    """The app's :class:`ProgressCast` (``current_app`` when no app is given)."""
    return (app or current_app).extensions["progresscast"]


def get_tracker(app: Flask | None = None) -> ProgressTracker:
    """The app's tracker (``current_app`` when no app is given)."""
    return current_progress(app).tracker
