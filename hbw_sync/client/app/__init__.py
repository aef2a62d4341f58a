"""``hbw-sync app``: a local web app over the library API, for people who never open a terminal.

Only the security gate exists so far (``security.py``); pages and actions come next (issue 14
items 1, 5, 6, 7). The app will call the library directly, never the CLI.
"""
