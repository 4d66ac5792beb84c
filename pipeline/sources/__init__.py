"""Fetching and parsing raw data.

``fetch`` moves bytes from a source (local path, ``file://`` or ``http(s)://``) into
``data/raw`` with a checksum and an atomic rename; one adapter module per source format
turns those bytes into Python values and names the file and line when they are wrong.
"""
