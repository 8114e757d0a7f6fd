"""The AWS target: Pulumi stacks per region plus a global DNS stack (see ``driver``)."""
