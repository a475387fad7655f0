"""Checking what comes in before it is used: the config schema (schema) and its rules (config), and
checkpoint files (checkpoint). CSV files are checked where the lessons read them (gradlab.lessons.csvfile)."""
