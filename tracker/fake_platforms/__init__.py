"""Local stand-ins for the X, Mastodon and Bluesky APIs, served on 127.0.0.1.

They speak each documented API closely enough for the real tweepy, Mastodon.py and atproto
clients (paging, rate-limit headers, errors) and can inject faults. The test suite and the
offline demo both use them; they never touch the network.
"""
