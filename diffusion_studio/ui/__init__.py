"""The Qt desktop app: thin panels over the engine. Only this package imports PySide6."""
