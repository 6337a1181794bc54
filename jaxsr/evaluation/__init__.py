"""Scoring SR against HR: metrics suites, tiled inference, held-out tables and report files."""
