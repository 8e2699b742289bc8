"""Platform adapters: one small module per platform, all behind `tracker.platforms.base.Adapter`.

Only the modules in this package import tweepy, Mastodon.py or atproto.
"""
