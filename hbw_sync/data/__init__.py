"""Data files shipped with hbw-sync (zstd dictionaries ops-<id>.zdict), read via importlib.resources.

This file makes the folder a regular package, so setuptools' find: includes it without the
"Package would be ignored" deprecation warning; package_data `hbw_sync = data/*` ships the files.
A dictionary id, once written by clients, must ship forever: never change or delete ops-<id>.zdict.
"""
