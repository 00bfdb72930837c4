"""Adapters: the only modules that import boto3 (and the in-process push hub)."""
