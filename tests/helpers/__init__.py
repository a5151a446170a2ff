"""Assertions shared by the test suite: what two float computation paths can promise each other."""
