"""Test suite of il_ros (a package so that tests can share tests/helpers.py)."""
