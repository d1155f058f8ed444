"""Tests of sync/client, one file per module.

A package (not a bare directory) because its modules share basenames with tests/sync
(test_roster.py tests sync/roster.py there, sync/client/roster.py here).
"""
