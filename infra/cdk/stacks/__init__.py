"""Stacks only compose constructs from :mod:`infra.cdk.constructs`."""
