"""Scheduled work and the scheduler wiring (APScheduler 3.x). Jobs call `tracker` functions only."""
