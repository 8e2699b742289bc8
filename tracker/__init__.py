"""Campaign tracker: follows a social media campaign (a tour of visits) across X, Mastodon and Bluesky."""

__version__ = "0.1.0"
