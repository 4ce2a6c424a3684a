"""Operator tools behind `kafka-scheduler get|list|stats|cancel|import|dlq`: read state, import, dead letters.

The CLI (scheduler/cli/ops.py) only parses and prints; everything here takes settings and plain values.
"""
