"""Pulumi components and programs of the AWS target.

Importing this package's program modules imports pulumi and pulumi_aws: only the AWS
target's driver, the stack projects under ``stacks/`` and tests do. ``settings`` is pure
Python and safe to import anywhere.
"""
