"""Locust's corner: the phones as Locust users, the asyncio bridge, the headless runner.

Importing Locust monkey-patches the process for gevent, so nothing outside
this package imports it, and the asyncio side (``agent``) runs in its own
process.
"""
